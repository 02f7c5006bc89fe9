"""JSONL sink: exact lines, per-source files, append repair, whole lines after a stop."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import jsonschema
import pytest
from conftest import fill_disk
from sinkdata import T0, result

from edgewatch.config import JsonlSinkConfig, MaskFormat
from edgewatch.errors import SinkError
from edgewatch.metrics import Metrics
from edgewatch.pipeline.sinkworker import SinkWorker
from edgewatch.sinks import build_sink
from edgewatch.sinks.jsonl import JsonlSink
from edgewatch.types import EventKind, SourceEvent
from edgewatch.wire import dumps, event_message, frame_message, schema


def _sink(path: str, **kw: object) -> JsonlSink:
    sink = build_sink(JsonlSinkConfig(path=path, **kw), Metrics(), mask_format=MaskFormat.RLE)
    assert isinstance(sink, JsonlSink)
    return sink


def _lines(path: Path) -> list[dict]:
    data = path.read_bytes()
    assert data.endswith(b"\n")
    return [json.loads(line) for line in data.decode("utf-8").splitlines()]


@pytest.mark.parametrize(("events", "expected_events"),
                         [(True, {"a": 2, "b": 1}), (False, {"a": 0, "b": 0})])
def test_lines_per_source_exact(tmp_path: Path, events: bool, expected_events: dict) -> None:
    sink = _sink(str(tmp_path / "out" / "deep" / "{source}.jsonl"), events=events)
    sink.start()
    want: dict[str, list[bytes]] = {"a": [], "b": []}
    for src in ("a", "b"):
        ev = SourceEvent(src, EventKind.CONNECTED, T0, "opened")
        sink.event(ev)
        if events:
            want[src].append(dumps(event_message(ev)))
    for i in range(5):
        for src in ("a", "b"):
            r = result(i, src, masks=True, labels=True, keypoints=17)
            sink.write(r)
            want[src].append(dumps(frame_message(r, MaskFormat.RLE)))
    sink.event(SourceEvent("a", EventKind.ENDED, T0 + 1))
    if events:
        want["a"].append(dumps(event_message(SourceEvent("a", EventKind.ENDED, T0 + 1))))
    sink.stop()
    for src in ("a", "b"):
        path = tmp_path / "out" / "deep" / f"{src}.jsonl"
        assert path.read_bytes() == b"".join(line + b"\n" for line in want[src])
        msgs = _lines(path)
        assert sum(m["type"] == "event" for m in msgs) == expected_events[src]
        for m in msgs:
            jsonschema.validate(m, schema())


def test_fixed_path_opens_at_start_and_mixes_sources(tmp_path: Path) -> None:
    path = tmp_path / "all.jsonl"
    sink = _sink(str(path))
    sink.start()
    assert path.exists() and path.read_bytes() == b""
    sink.write(result(0, "a"))
    sink.write(result(0, "b"))
    sink.stop()
    assert [(m["source"], m["frame"]) for m in _lines(path)] == [("a", 0), ("b", 0)]


@pytest.mark.parametrize(
    ("append", "existing", "kept"),
    [
        (False, b'{"old":1}\n', b""),
        (True, b'{"old":1}\n', b'{"old":1}\n'),
        (True, b'{"old":1}\n{"torn', b'{"old":1}\n'),
        (True, b'{"torn', b""),
        (True, b"", b""),
    ],
)
def test_append_and_truncate(tmp_path: Path, append: bool, existing: bytes, kept: bytes) -> None:
    path = tmp_path / "x.jsonl"
    path.write_bytes(existing)
    sink = _sink(str(path), append=append)
    sink.start()
    r = result(3)
    sink.write(r)
    sink.stop()
    assert path.read_bytes() == kept + dumps(frame_message(r)) + b"\n"


def test_torn_tail_longer_than_a_block(tmp_path: Path) -> None:
    from edgewatch.sinks.jsonl import LineFile

    path = tmp_path / "big.jsonl"
    head = b"".join(b'{"i":%d}\n' % i for i in range(20000))
    path.write_bytes(head + b"x" * 200_000)
    f = LineFile(path, append=True)
    f.open()
    f.write_line(b'{"new":1}')
    f.close()
    assert path.read_bytes() == head + b'{"new":1}\n'


@pytest.mark.parametrize("where", ["under_file", "proc"])
def test_unwritable_path_is_sink_error(tmp_path: Path, where: str) -> None:
    if where == "under_file":
        (tmp_path / "file").write_text("x")
        path = tmp_path / "file" / "out.jsonl"
    else:
        path = Path("/proc/edgewatch-test/out.jsonl")
    sink = _sink(str(path))
    with pytest.raises(SinkError, match=str(path)):
        sink.start()
    templated = _sink(str(path).replace("out", "{source}"))
    templated.start()
    with pytest.raises(SinkError, match=r"cam\.jsonl"):
        templated.write(result(0))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_whole_lines_after_signal(tmp_path: Path, child_writer, sig: int) -> None:
    path = tmp_path / "live.jsonl"
    rc, written, out = child_writer("jsonl", path, 40, sig)
    data = path.read_bytes()
    msgs = [json.loads(line) for line in data.decode().splitlines()]
    assert [m["frame"] for m in msgs] == list(range(len(msgs)))
    if sig == signal.SIGTERM:
        assert rc == 0, out
        assert "stopped" in out
        assert data.endswith(b"\n")
        assert len(msgs) == written >= 40
    else:
        assert rc == -signal.SIGKILL
        # Every write is one whole line: nothing torn even when killed mid-run.
        assert data.endswith(b"\n") and len(msgs) >= 40


def _wait_handled(worker: SinkWorker, n: int) -> None:
    deadline = time.monotonic() + 30
    while worker.status.handled < n and time.monotonic() < deadline:
        time.sleep(0.01)
    assert worker.status.handled == n


def test_full_disk_leaves_whole_lines_and_recovers(tmp_path: Path, small_disk: Path) -> None:
    """ENOSPC mid-line: the torn part is cut, the error counted, writing resumes with space."""
    path = small_disk / "out.jsonl"
    filler = fill_disk(small_disk, leave=6000)
    metrics = Metrics()
    worker = SinkWorker(_sink(str(path)), metrics, queue_size=1000)
    worker.start()
    for i in range(60):
        worker.submit(result(i))
    _wait_handled(worker, 60)
    assert 0 < worker.status.written < 60
    assert worker.status.errors == 60 - worker.status.written
    assert "No space left" in worker.status.last_error
    before = _lines(path)  # ends in a whole line, every line parses
    assert [m["frame"] for m in before] == list(range(worker.status.written))
    filler.unlink()
    for i in range(60, 70):
        worker.submit(result(i))
    worker.stop(time.monotonic() + 30)
    after = _lines(path)
    assert after[: len(before)] == before
    assert [m["frame"] for m in after[len(before) :]] == list(range(60, 70))
