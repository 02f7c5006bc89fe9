"""Config errors name the file, line and YAML path; overrides and env work."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgewatch.config import (
    BotSortConfig,
    ByteTrackConfig,
    SourceKind,
    load_config,
    parse_config,
)
from edgewatch.errors import ConfigError


@pytest.fixture
def base(tmp_path: Path) -> dict[str, str]:
    video = tmp_path / "v.avi"
    video.write_bytes(b"x")
    model = tmp_path / "m.onnx"
    model.write_bytes(b"x")
    return {"video": str(video), "model": str(model)}


def _cfg(base: dict[str, str], extra: str = "", source_extra: str = "", det_extra: str = "") -> str:
    return (
        "sources:\n"
        f"  - id: cam\n    uri: {base['video']}\n{source_extra}"
        "detector:\n"
        f"  model: {base['model']}\n{det_extra}"
        f"{extra}"
    )


@pytest.mark.parametrize(
    ("extra", "source_extra", "det_extra", "expected"),
    [
        ("", "    bogus: 1\n", "", "c.yaml:4 sources[0].bogus: unknown key"),
        (
            "",
            "",
            "  conf: 1.5\n",
            "c.yaml:6 detector.conf: Input should be less than or equal to 1",
        ),
        ("", "", "  device: gpu\n", "c.yaml:6 detector.device: String should match pattern"),
        (
            "",
            "",
            "  kpt_shape: [17, 4]\n",
            "c.yaml:6 detector.kpt_shape[1]: Input should be 2 or 3",
        ),
        (
            "",
            "",
            "  kpt_shape: [0, 3]\n",
            "c.yaml:6 detector.kpt_shape[0]: Input should be greater than or equal to 1",
        ),
        (
            "sinks:\n  - {type: jsonl, path: a}\n  - {type: video}\n",
            "",
            "",
            "c.yaml:8 sinks[1].path: Field required",
        ),
        (
            "sinks:\n  - {type: jsonl, path: a, colour: red}\n",
            "",
            "",
            "c.yaml:7 sinks[0].colour: unknown key",
        ),
        ("sinks:\n  - {type: kafka}\n", "", "", "c.yaml:7 sinks[0]: Input tag 'kafka'"),
        (
            "tracker:\n  type: botsort\n  gmc_method: magic\n",
            "",
            "",
            "c.yaml:8 tracker.gmc_method: Input should be",
        ),
        (
            "tracker:\n  type: bytetrack\n  track_buffer: -1\n",
            "",
            "",
            "c.yaml:8 tracker.track_buffer: Input should be greater than or equal to 1",
        ),
        ("health:\n  listen: x\n  extra: 1\n", "", "", "c.yaml:8 health.extra: unknown key"),
        ("", "    id: dup\n", "", "c.yaml:4: invalid YAML: duplicate key 'id'"),
        ("surprise: 1\n", "", "", "c.yaml:6 surprise: unknown key"),
    ],
)
def test_errors_name_line_and_path(base, extra, source_extra, det_extra, expected) -> None:
    with pytest.raises(ConfigError) as e:
        parse_config(_cfg(base, extra, source_extra, det_extra), name="c.yaml")
    assert expected in str(e.value), str(e.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("sources: []\ndetector: {model: x}\n", "sources: List should have at least 1 item"),
        ("sources:\n  - {id: a, uri: /no/such.mp4}\n", "sources[0]: Value error"),
        ("detector: {model: /no/such.onnx}\n", "detector.model: model file not found"),
        ("sources: [\n", "c.yaml:2: invalid YAML"),
        ("- a\n- b\n", "the top level must be a mapping"),
        ("sources:\n  - {id: 'bad id', uri: x}\n", "sources[0].id: String should match pattern"),
    ],
)
def test_more_errors(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_config(text, name="c.yaml")
    assert expected in str(e.value) or expected.replace(
        "Value error", "uri: file not found"
    ) in str(e.value), str(e.value)


def test_missing_file_is_named(base) -> None:
    with pytest.raises(ConfigError) as e:
        parse_config(_cfg(base).replace(base["video"], "/no/clip.mp4"), name="c.yaml")
    assert "c.yaml:2 sources[0]: uri: file not found: /no/clip.mp4" in str(e.value)


def test_env_interpolation_and_secret(base, monkeypatch) -> None:
    monkeypatch.setenv("CAM_PASS", "s3cr3t!")
    text = _cfg(base).replace(
        f"uri: {base['video']}", "uri: rtsp://admin:${CAM_PASS}@127.0.0.1:8554/x"
    )
    cfg = parse_config(text)
    assert cfg.sources[0].uri == "rtsp://admin:s3cr3t!@127.0.0.1:8554/x"
    assert cfg.sources[0].kind is SourceKind.RTSP
    from edgewatch.secrets import mask

    assert "s3cr3t!" not in mask(f"opening {cfg.sources[0].uri} with s3cr3t!")


def test_unset_env_is_an_error(base, monkeypatch) -> None:
    monkeypatch.delenv("NOPE_NOT_SET", raising=False)
    text = _cfg(base, det_extra="  device: ${NOPE_NOT_SET}\n")
    with pytest.raises(ConfigError, match=r"detector\.device: environment variable NOPE_NOT_SET"):
        parse_config(text, name="c.yaml")
    cfg = parse_config(_cfg(base, det_extra="  device: ${NOPE_NOT_SET:-cpu}\n"))
    assert cfg.detector.device == "cpu"


@pytest.mark.parametrize(
    ("override", "check"),
    [
        ("detector.conf=0.4", lambda c: c.detector.conf == 0.4),
        ("sources[0].max_frames=10", lambda c: c.sources[0].max_frames == 10),
        ("tracker.type=botsort", lambda c: isinstance(c.tracker, BotSortConfig)),
        ("sinks[0]={type: jsonl, path: o.jsonl}", lambda c: c.sinks[0].path == "o.jsonl"),
    ],
)
def test_overrides(base, override, check) -> None:
    assert check(parse_config(_cfg(base), overrides=[override]))


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("detector.conf", "expected key=value"),
        ("detector.conf=9", "detector.conf: Input should be less than or equal to 1"),
        ("sources[3].uri=x", "no such path"),
    ],
)
def test_bad_overrides(base, override, expected) -> None:
    with pytest.raises(ConfigError, match=expected.replace("[", r"\[")):
        parse_config(_cfg(base), overrides=[override])


def test_tracker_file_ultralytics_style(base, tmp_path: Path) -> None:
    tf = tmp_path / "bt.yaml"
    tf.write_text("tracker_type: bytetrack\ntrack_high_thresh: 0.5\ntrack_buffer: 60\n")
    cfg = parse_config(_cfg(base, extra=f"tracker: {tf}\n"))
    assert isinstance(cfg.tracker, ByteTrackConfig)
    assert (cfg.tracker.track_high_thresh, cfg.tracker.track_buffer) == (0.5, 60)


def test_repo_configs_validate(detector_path, vtest_path) -> None:
    root = Path(__file__).resolve().parent.parent
    overrides = [f"sources[0].uri={vtest_path}", f"detector.model={detector_path}"]
    cfg = load_config(root / "configs" / "demo.yaml", overrides)
    assert cfg.sources[0].id == "vtest"
    for name in ("bytetrack", "botsort"):
        text = (root / "configs" / "trackers" / f"{name}.yaml").read_text()
        assert "tracker_type" in text


_CAM2 = "  - {id: cam2, uri: rtsp://h/s}\n"


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        # 1. a sink file that is an input of the run, or written twice
        ("sinks:\n  - {type: jsonl, path: '@video'}\n", "c.yaml:8 sinks[0].path: "),
        (
            "sinks:\n  - {type: mot, path: '@model', sources: [cam]}\n",
            "is the input detector.model",
        ),
        (
            "sinks:\n  - {type: jsonl, path: o.jsonl}\n  - {type: jsonl, path: o.jsonl}\n",
            "c.yaml:9 sinks[1].path: ",
        ),
        (
            "sinks:\n  - {type: jsonl, path: 'o/{source}.x'}\n"
            "  - {type: mot, path: o/cam.x, sources: [cam]}\n",
            "also written by sinks[0].path",
        ),
        # 2. one video/mot file cannot hold two sources
        ("sinks:\n  - {type: video, path: o.mp4}\n", "c.yaml:8 sinks[0].path: video sink shared"),
        ("sinks:\n  - {type: mot, path: o.txt}\n", "needs '{source}' in its path"),
        # 3. unknown source ids
        (
            "sinks:\n  - {type: jsonl, path: o.jsonl, sources: [cam, nope]}\n",
            "c.yaml:8 sinks[0].sources: unknown source id 'nope' (ids: cam, cam2)",
        ),
        # 4. video encoder and container
        (
            "sinks:\n  - {type: video, path: 'o/{source}.mp4', codec: nocodec}\n",
            "c.yaml:8 sinks[0].codec: PyAV/FFmpeg has no encoder 'nocodec'",
        ),
        (
            "sinks:\n  - {type: video, path: 'o/{source}.txt'}\n",
            "c.yaml:8 sinks[0].path: .txt is not a known video container",
        ),
        ("sinks:\n  - {type: video, path: 'o/{source}'}\n", "no extension is not a known video"),
        # 5. ZeroMQ endpoints
        ("sinks:\n  - {type: zmq, endpoint: foo}\n", "c.yaml:8 sinks[0].endpoint: endpoint 'foo'"),
        (
            "sinks:\n  - {type: zmq, endpoint: 'tcp://127.0.0.1:notaport'}\n",
            "sinks[0].endpoint: endpoint 'tcp://127.0.0.1:notaport': port must be 1-65535",
        ),
        ("sinks:\n  - {type: zmq, endpoint: 'tcp://h:0'}\n", "port must be 1-65535 or *"),
        ("sinks:\n  - {type: zmq, endpoint: 'tcp://:5555'}\n", "expected tcp://host:port"),
        ("sinks:\n  - {type: zmq, endpoint: 'ipc://'}\n", "empty ipc address"),
        ("sinks:\n  - {type: zmq, endpoint: 'udp://h:1'}\n", "expected tcp://host:port, ipc"),
        # 6. a ReID model that is not there
        (
            "tracker: {type: botsort, with_reid: true, model: /nonexist.onnx}\n",
            "c.yaml:7 tracker.model: ReID model file not found: /nonexist.onnx",
        ),
    ],
)
def test_sink_and_tracker_checks(base, extra: str, expected: str) -> None:
    extra = extra.replace("@video", base["video"]).replace("@model", base["model"])
    with pytest.raises(ConfigError) as e:
        parse_config(_cfg(base, extra, _CAM2), name="c.yaml")
    assert expected in str(e.value), str(e.value)


@pytest.mark.parametrize(
    "sinks",
    [
        "  - {type: jsonl, path: all.jsonl}\n",  # JSONL lines carry their source
        "  - {type: video, path: one.mp4, sources: [cam]}\n",
        "  - {type: mot, path: 'o/{source}.txt'}\n  - {type: jsonl, path: 'o/{source}.jsonl'}\n",
        "  - {type: video, path: 'o/{source}.mkv', codec: mpeg4}\n",
        "  - {type: zmq, endpoint: 'tcp://*:5555'}\n  - {type: zmq, endpoint: 'tcp://[::1]:*'}\n",
        "  - {type: zmq, endpoint: 'ipc:///tmp/ew.sock'}\n  - {type: zmq, endpoint: inproc://x}\n",
    ],
)
def test_sink_checks_allow(base, sinks: str) -> None:
    text = _cfg(base, "sinks:\n" + sinks, _CAM2)
    assert parse_config(text).sinks


@pytest.mark.parametrize(
    ("tracker", "ok"),
    [
        ("{type: botsort, with_reid: true, model: auto}", True),
        ("{type: botsort, with_reid: false, model: /nonexist.onnx}", True),
        ("{type: botsort, with_reid: true, model: '@model'}", True),
        ("{type: botsort, with_reid: true, model: nonexist.onnx}", False),
    ],
)
def test_reid_model_exists_only_when_used(base, tracker: str, ok: bool) -> None:
    text = _cfg(base, "tracker: " + tracker.replace("@model", base["model"]) + "\n")
    if ok:
        assert parse_config(text).tracker.type == "botsort"
    else:
        with pytest.raises(ConfigError, match=r"tracker\.model: ReID model file not found"):
            parse_config(text)


def _bomb(levels: int) -> str:
    lines = ["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, levels):
        prev, cur = chr(ord("a") + i - 1), chr(ord("a") + i)
        lines.append(f"{cur}: &{cur} [" + ", ".join([f"*{prev}"] * 9) + "]")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (_bomb(9), "c.yaml:6: invalid YAML: aliases expand to more than 100000 nodes"),
        ("a: &a [*a]\n", "c.yaml:1: invalid YAML: recursive alias"),
        ("[" * 5000 + "]" * 5000, "c.yaml: invalid YAML: nested too deeply"),
    ],
)
def test_yaml_bombs_are_refused(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_config(text, name="c.yaml")
    assert expected in str(e.value), str(e.value)


def test_small_aliases_still_work(base) -> None:
    text = _cfg(base, "sinks:\n  - {type: jsonl, path: a.jsonl, sources: &s [cam]}\n")
    text += "  - {type: jsonl, path: b.jsonl, sources: *s}\n"
    assert [s.path for s in parse_config(text).sinks] == ["a.jsonl", "b.jsonl"]


@pytest.mark.parametrize(
    ("tracker_text", "expected"),
    [
        ("tracker_type: [bytetrack\n", "t.yaml:2: invalid YAML"),
        (_bomb(9), "t.yaml:6: invalid YAML: aliases expand to more than"),
        (b"track_buffer: \xff\n", "t.yaml:1: not UTF-8 text (byte 0xff at 14)"),
    ],
)
def test_bad_tracker_file(base, tmp_path: Path, tracker_text: str | bytes, expected: str) -> None:
    tf = tmp_path / "t.yaml"
    if isinstance(tracker_text, bytes):
        tf.write_bytes(tracker_text)
    else:
        tf.write_text(tracker_text)
    with pytest.raises(ConfigError) as e:
        parse_config(_cfg(base, f"tracker: {tf}\n"), name="c.yaml")
    assert f"{tmp_path}/{expected}" in str(e.value), str(e.value)


def test_non_utf8_config_file(base, tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_bytes(_cfg(base).encode() + b"# caf\xe9\n")
    with pytest.raises(ConfigError, match=r"c\.yaml:6: not UTF-8 text \(byte 0xe9 at "):
        load_config(cfg)


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("detector..conf=1", "--set detector..conf: bad key at character 10"),
        ("sources[0]]=1", "--set sources[0]]: bad key at character 11"),
        ("detector.=1", "--set detector.: key ends with '.'"),
        ("sources[x].uri=1", "--set sources[x].uri: bad key at character 8"),
        ("=1", "empty key"),
        ("detector.device=${NOPE_NOT_SET}", "--set detector.device: environment variable NOPE"),
        ("detector.conf=[1", "--set detector.conf:1: invalid YAML: expected"),
    ],
)
def test_bad_override_keys(base, monkeypatch, override: str, expected: str) -> None:
    monkeypatch.delenv("NOPE_NOT_SET", raising=False)
    with pytest.raises(ConfigError) as e:
        parse_config(_cfg(base), overrides=[override])
    assert expected in str(e.value), str(e.value)


def test_override_env_is_expanded_and_secret(base, monkeypatch) -> None:
    monkeypatch.setenv("EW_TEST_PASS", "pa55word")
    cfg = parse_config(
        _cfg(base), overrides=["sources[0].uri=rtsp://u:${EW_TEST_PASS}@h/s", "sinks=[]"]
    )
    assert cfg.sources[0].uri == "rtsp://u:pa55word@h/s"
    from edgewatch.secrets import mask

    assert "pa55word" not in mask(cfg.sources[0].uri)
