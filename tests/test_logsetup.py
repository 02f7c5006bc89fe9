"""JSON logging (``--log-json`` / ``log: {json: true}``): one object per line, secrets masked."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from testkit import free_port, tiny_detector

from edgewatch.logsetup import setup_logging
from edgewatch.secrets import registry

ROOT = Path(__file__).resolve().parent.parent
KEYS = {"time", "level", "logger", "message", "thread"}


def _check_lines(stderr: str, secret: str) -> list[dict]:
    lines = stderr.splitlines()
    assert lines, "no log lines"
    records = []
    for line in lines:
        rec = json.loads(line)  # every stderr line is one JSON object
        assert isinstance(rec, dict) and KEYS <= set(rec) <= KEYS | {"exception"}, line
        assert rec["level"] in ("debug", "info", "warning", "error", "critical"), line
        assert rec["time"].endswith("Z") and rec["logger"].startswith("edgewatch"), line
        records.append(rec)
    assert secret not in stderr
    return records


@pytest.mark.parametrize("how", ["--log-json", "log: {json: true}"])
def test_cli_json_logs_mask_the_password(tmp_path: Path, how: str) -> None:
    model = tiny_detector(tmp_path / "tiny.onnx")
    uri = f"rtsp://user:secret@127.0.0.1:{free_port()}/x"  # nothing listens: refused
    cfg = tmp_path / "p.yaml"
    cfg.write_text(
        f"sources:\n  - {{id: cam, uri: '{uri}', reconnect: {{initial: 0.1, max: 0.2}}}}\n"
        f"detector: {{model: '{model}'}}\nshutdown_timeout: 3\n"
        + ("log: {json: true}\n" if how.startswith("log:") else "")
    )
    flags = ["--log-json"] if how == "--log-json" else []
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgewatch", *flags, "run", str(cfg)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    head = []
    try:
        while "retry 3 " not in (line := proc.stderr.readline()):  # failures being logged
            assert line, "".join(head)  # EOF: the process ended early
            head.append(line)
        head.append(line)
        proc.send_signal(signal.SIGTERM)
        out, rest = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, "".join(head) + rest
    records = _check_lines("".join(head) + rest, "secret")
    assert "secret" not in out
    refused = [r for r in records if "connection refused by 127.0.0.1" in r["message"]]
    assert refused and all("rtsp://user:***@127.0.0.1:" in r["message"] for r in refused)
    assert {r["level"] for r in refused} == {"info", "warning"}  # the FAILED event, then retries
    assert any(r["message"] == "received SIGTERM" for r in records)


def test_exception_text_is_masked(capsys: pytest.CaptureFixture[str]) -> None:
    """A traceback that quotes a URI password and a registered ${VAR} secret."""
    registry.add("Env-s3cret-42")
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        setup_logging(logging.INFO, json_format=True)
        try:
            raise RuntimeError("cannot open rtsp://admin:secret@10.0.0.9/s with Env-s3cret-42")
        except RuntimeError:
            logging.getLogger("edgewatch.test").exception("opening %s", "rtsp://a:secret@h/x")
    finally:
        for h in list(root.handlers):
            root.removeHandler(h)
        for h in handlers:
            root.addHandler(h)
        root.setLevel(level)
    err = capsys.readouterr().err
    (rec,) = _check_lines(err, "secret@")
    assert "Env-s3cret-42" not in err
    assert rec["level"] == "error" and rec["message"] == "opening rtsp://a:***@h/x"
    assert rec["exception"].startswith("Traceback (most recent call last):")
    assert rec["exception"].endswith(
        "RuntimeError: cannot open rtsp://admin:***@10.0.0.9/s with ***"
    )
