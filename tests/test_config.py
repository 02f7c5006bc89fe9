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
