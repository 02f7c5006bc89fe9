"""``edgewatch validate``: the config checks of ``run`` plus loading its models on CPU,
and the CLI's own answers (``--version``, a wrong-type value)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from pipeline.clip_models import write_toy_encoders
from pipeline.yolo_onnx_builders import build_model, detect_output
from testkit import tiny_detector

from edgewatch import __version__
from edgewatch.cli import main
from edgewatch.pipeline.models.clip_tokenizer import EOT, SOT


def _config(tmp_path: Path, model: Path, detector_extra: str = "", extra: str = "") -> Path:
    frames = tmp_path / "frames"
    frames.mkdir(exist_ok=True)
    cfg = tmp_path / "pipeline.yaml"
    cfg.write_text(
        "sources:\n"
        "  - {id: lobby, uri: 'rtsp://viewer:hunter2@cam.local/stream1'}\n"
        f"  - {{id: stills, uri: '{frames}'}}\n"
        "detector:\n"
        f"  model: {model}\n"
        f"{detector_extra}"
        "sinks:\n"
        "  - {type: jsonl, path: 'out/{source}.jsonl'}\n"
        f"{extra}"
    )
    return cfg


def _validate(cfg: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str, str]:
    rc = main(["validate", str(cfg), *extra])
    out, err = capsys.readouterr()
    return rc, out, err


def test_good_config_prints_what_run_would_resolve(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = tiny_detector(tmp_path / "tiny.onnx")
    rc, out, err = _validate(_config(tmp_path, model), capsys)
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[0] == f"{tmp_path / 'pipeline.yaml'}: OK"
    assert "  2 sources:" in lines
    assert "    lobby: rtsp rtsp://viewer:***@cam.local/stream1" in lines
    assert (
        f"  detector: {model}: task detect, 2 classes (person, car), imgsz 320x320 (h x w), "
        "batch 1, NMS, input float32; opened on CPU, runs on device auto"
    ) in lines
    assert "hunter2" not in out + err


def test_overrides_reach_the_model_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = tiny_detector(tmp_path / "tiny.onnx")
    cfg = _config(tmp_path, model)
    rc, out, _ = _validate(cfg, capsys, "--set", "detector.names=[walker, cyclist]")
    assert rc == 0 and "2 classes (walker, cyclist)" in out
    rc, _, err = _validate(cfg, capsys, "--set", "detector.classes=[zebra]")
    assert rc == 2
    assert f"{cfg} detector.model: detector.classes: unknown class name 'zebra'" in err


def test_real_detector(
    tmp_path: Path, detector_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, out, err = _validate(_config(tmp_path, detector_path), capsys)
    assert rc == 0, err
    assert "task detect, 2 classes (Normal, Fall), imgsz 640x640 (h x w), batch 1" in out


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (os.urandom(4096), "not an ONNX file"),
        (b"", "cannot load the ONNX graph"),
        (b"definitely not protobuf", "not an ONNX file"),
    ],
)
def test_non_onnx_model_is_a_config_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, message: str
) -> None:
    """`run` would fail on it at start-up, so `validate` must too: exit 2 at detector.model."""
    fake = tmp_path / "fake.onnx"
    fake.write_bytes(content)
    cfg = _config(tmp_path, fake)
    rc, out, err = _validate(cfg, capsys)
    assert rc == 2 and out == ""
    assert re.search(rf"^{re.escape(str(cfg))} detector\.model: .*fake\.onnx: {message}", err, re.M)
    assert "Traceback" not in err


def test_pose_model_without_metadata_names_kpt_shape(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The layout is resolved as `run` resolves it: a bare pose export needs detector.kpt_shape."""
    out0 = detect_output(
        np.array([[100, 100, 40, 80]], np.float32),
        np.array([[0.9]], np.float32),
        2100,
        extra=np.zeros((1, 51), np.float32),
    )
    model = build_model(tmp_path / "pose.onnx", {"output0": out0})
    cfg = _config(tmp_path, model, "  task: pose\n  names: [person]\n")
    rc, _, err = _validate(cfg, capsys)
    assert rc == 2 and "set detector.kpt_shape: [K, D]" in err
    rc, out, err = _validate(cfg, capsys, "--set", "detector.kpt_shape=[17, 3]")
    assert rc == 0, err
    assert "task pose, 1 classes (person)" in out


def _toy_clip(d: Path) -> Path:
    d.mkdir()
    write_toy_encoders(d, 224, "n")
    (d / "vocab.json").write_text(json.dumps({SOT: 0, EOT: 1}))
    (d / "merges.txt").write_text("#version: 0.2\n")
    return d


def test_labeler_model_is_loaded(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = tiny_detector(tmp_path / "tiny.onnx")
    clip = _toy_clip(tmp_path / "clip")
    labeler = f"labeler:\n  model: {clip}\n  labels: [a person, a bag]\n"
    cfg = _config(tmp_path, model, extra=labeler)
    rc, out, err = _validate(cfg, capsys)
    assert rc == 0, err
    assert f"  labeler: {clip}: image 224x224, embedding 8, 2 labels" in out.splitlines()
    (clip / "image_encoder.onnx").write_bytes(b"not a model")
    rc, out, err = _validate(cfg, capsys)
    assert rc == 2 and out == ""
    assert f"{cfg} labeler.model: " in err and "image_encoder.onnx: not an ONNX file" in err


def test_wrong_type_value_names_the_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = tiny_detector(tmp_path / "tiny.onnx")
    cfg = _config(tmp_path, model, "  conf: high\n")
    rc, out, err = _validate(cfg, capsys)
    assert rc == 2 and out == ""
    assert f"{cfg}:6 detector.conf: Input should be a valid number" in err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out == f"edgewatch {__version__}\n"
    assert re.fullmatch(r"\d+\.\d+\.\d+\S*", __version__)


@pytest.mark.parametrize(
    ("extra", "data", "expected"),
    [
        ("  - {type: zmq, endpoint: 'tcp://127.0.0.1:notaport'}\n", b"", r"sinks\[1\]\.endpoint: "),
        ("  - {type: jsonl, path: 'out/{source}.jsonl'}\n", b"", r"sinks\[1\]\.path: .* also"),
        ("a: &a [x, x, x, x, x, x, x, x, x, x]\n", b"", r"aliases expand to more than"),
        ("", b"\xff\xfe", r"pipeline\.yaml:\d+: not UTF-8 text"),
    ],
)
def test_bad_config_exits_2_before_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: str, data: bytes, expected: str
) -> None:
    model = tiny_detector(tmp_path / "tiny.onnx")
    if extra.startswith("a:"):  # an alias bomb: 10 ** 6 nodes from a few lines
        extra += "".join(
            f"{c}: &{c} [{', '.join([f'*{p}'] * 10)}]\n" for p, c in zip("abcde", "bcdef")
        )
    cfg = _config(tmp_path, model, extra=extra)
    cfg.write_bytes(cfg.read_bytes() + data)
    rc, out, err = _validate(cfg, capsys)
    assert rc == 2 and out == "", err
    assert re.search(expected, err), err
    assert "Traceback" not in err


def test_static_batch_model_warns_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = tiny_detector(tmp_path / "tiny.onnx")  # exported with a fixed batch of 1
    rc, out, err = _validate(_config(tmp_path, model, detector_extra="  batch: 4\n"), capsys)
    assert rc == 0 and "batch 1," in out, err
    warning = (
        f"detector {model}: the model has a static batch of 1; detector.batch 4 "
        "is not used (export with dynamic=True to batch freely)"
    )
    assert err.count(warning) == 1, err
    rc, _, err = _validate(_config(tmp_path, model), capsys)
    assert rc == 0 and "static batch" not in err
