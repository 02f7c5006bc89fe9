"""JSONL sink: exact lines, per-source files, append repair, whole lines after a stop."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import jsonschema
import pytest
from sinkdata import T0, result

from edgewatch.config import JsonlSinkConfig, MaskFormat
from edgewatch.errors import SinkError
from edgewatch.metrics import Metrics
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
