"""The pipeline runner: threads, bounded queues and back-pressure.

::

    source-<id> threads ─► per-source queue ─► prep (gather a batch across
    sources, letterbox) ─► infer (ONNX Runtime) ─► post (decode, NMS, to
    source pixels) ─► track (per-source tracker, labeler, FrameResult)
    ─► one worker per sink

Each stage hands whole batches (then frames) on in the order it got them, so
every source's frames stay in order. ONNX Runtime releases the GIL, so
decoding, pre- and post-processing (of the batch before), tracking and the
sinks run while the model computes. Live sources (and files
with ``realtime: true``) drop the oldest queued frame; other files block, so
every frame is processed. Every drop is counted per source and stage.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar, cast

import cv2
import numpy as np
import supervision as sv

from edgewatch.config import PipelineConfig, SourceConfig
from edgewatch.errors import EdgewatchError, SourceError
from edgewatch.metrics import Metrics
from edgewatch.pipeline.queues import BoundedQueue, Closed, Policy
from edgewatch.pipeline.sinkworker import SinkWorker
from edgewatch.pipeline.stats import StageClock
from edgewatch.secrets import mask
from edgewatch.sources import build_source
from edgewatch.sources.base import Source
from edgewatch.trackers import build_tracker
from edgewatch.trackers.base import Tracker
from edgewatch.trackers.botsort import BotSort
from edgewatch.types import (
    DATA_EMBEDDING,
    DATA_EMBEDDING_VALID,
    EventKind,
    Frame,
    FrameResult,
    SourceEvent,
    SourceState,
)

if TYPE_CHECKING:
    import zmq
    from tqdm import tqdm

    from edgewatch.health import HealthServer
    from edgewatch.pipeline.labeler import Labeler
    from edgewatch.pipeline.models.yolo import Prepared, YoloDetector

log = logging.getLogger(__name__)

_END = object()
#: How long shutdown waits, past its deadline, for a stage's call in progress.
_STAGE_GRACE_S = 30.0
_T = TypeVar("_T")
#: The per-frame timings recorded in ``edgewatch_stage_seconds{source,stage}``.
_STAGE_SERIES = ("decode", "preprocess", "inference", "postprocess", "track", "label")


@dataclass
class RunSummary:
    """What a run did; ``stage_ms`` holds mean milliseconds per frame, ``sink_ms``
    mean milliseconds per message (result or event) in each sink's ``write``."""

    frames: dict[str, int]
    elapsed_s: float
    stage_ms: dict[str, float]
    drops: dict[str, float]
    decode_errors: float
    sink_errors: dict[str, int]
    failed_sources: dict[str, str]
    error: str = ""
    sink_ms: dict[str, float] = field(default_factory=dict)

    @property
    def total_frames(self) -> int:
        return sum(self.frames.values())

    @property
    def fps(self) -> float:
        return self.total_frames / self.elapsed_s if self.elapsed_s > 0 else 0.0


@dataclass
class _SourceRun:
    """A running source: its thread, queue and per-source processing state."""

    cfg: SourceConfig
    source: Source
    queue: BoundedQueue[Frame]
    stop: threading.Event
    thread: threading.Thread | None = None
    finished: bool = False
    error: str = ""
    frames_in: int = 0
    frames_out: int = 0
    #: Frames the prep stage could not letterbox (skipped and counted).
    skipped: int = 0
    last_frame_time: float | None = None
    tracker: Tracker | None = None
    generation: int = 0
    last_wall: float = 0.0
    fps_window: list[float] = field(default_factory=list)
    #: Events waiting for the frames read before them: (frames_in at the event, event).
    pending_events: list[tuple[int, SourceEvent]] = field(default_factory=list)

    def settled(self) -> int:
        """Frames read so far that are published or dropped (no longer in flight)."""
        return self.frames_out + self.queue.dropped + self.skipped


@dataclass(frozen=True)
class _Work:
    frames: list[Frame]
    prepared: Prepared
    pre_ms: float


@dataclass(frozen=True)
class _Inferred:
    """A batch after the network, before decoding: raw outputs and timings."""

    work: _Work
    outputs: list[np.ndarray]
    infer_ms: float


class Pipeline:
    """Runs one :class:`PipelineConfig` until its sources end or :meth:`stop`."""

    def __init__(
        self,
        cfg: PipelineConfig,
        *,
        metrics: Metrics | None = None,
        progress: bool = False,
        on_result: Callable[[FrameResult], None] | None = None,
    ) -> None:
        self.cfg = cfg
        self.metrics = metrics or Metrics()
        self.progress = progress
        self.on_result = on_result
        self.clock = StageClock()
        self._stop = threading.Event()
        self._hard_stop = threading.Event()
        self._done = threading.Event()
        self._ready = threading.Condition()
        self._sources: dict[str, _SourceRun] = {}
        self._sources_lock = threading.Lock()
        #: Held by :meth:`reload` (one at a time) and by :meth:`shutdown` before it
        #: joins the sources; ``_reload_gen`` counts finished reloads (see _gather).
        self._reload_lock = threading.Lock()
        self._reload_gen = 0
        self._retired: list[_SourceRun] = []
        self._events_lock = threading.Lock()
        self._sinks: list[SinkWorker] = []
        self._sinks_stopped = False
        self._threads: list[threading.Thread] = []
        self._infer_q: BoundedQueue[_Work | object] = BoundedQueue(2, Policy.BLOCK)
        self._post_q: BoundedQueue[_Inferred | object] = BoundedQueue(2, Policy.BLOCK)
        self._track_q: BoundedQueue[tuple[Frame, sv.Detections, dict[str, float]] | object] = (
            BoundedQueue(16, Policy.BLOCK)
        )
        self._fatal = ""
        self._rr = 0
        self._started_at = 0.0
        self._elapsed = 0.0
        self._detector: YoloDetector | None = None
        self._labeler: Labeler | None = None
        self._health: HealthServer | None = None
        self._zmq_context: zmq.Context[zmq.Socket[bytes]] | None = None
        self._bar: tqdm[object] | None = None
        self._last_skip_log: dict[str, float] = {}

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Load models, open sinks, start every thread. Raises on a bad model/sink."""
        from edgewatch.pipeline.models.yolo import YoloDetector

        if self.cfg.health is not None:
            from edgewatch.health import HealthServer

            self._health = HealthServer(self.cfg.health, self.metrics, self.health)
            self._health.start()  # a port in use fails here, before anything else
        # Sinks next: a ZeroMQ bind is up while the models load, so subscribers
        # are connected before the first frame. Files open lazily on first write,
        # so a model that fails to load leaves nothing behind.
        try:
            self._start_sinks()
            log.info("loading detector %s", self.cfg.detector.model)
            self._detector = YoloDetector(self.cfg.detector, self.metrics)
            self._detector.load()
            if self.cfg.labeler is not None:
                from edgewatch.pipeline.labeler import Labeler

                self._labeler = Labeler(self.cfg.labeler, self._detector.names, self.metrics)
                self._labeler.start()
        except BaseException:
            self._stop_sinks(time.monotonic() + 2.0)
            if self._health is not None:
                self._health.stop()
            raise
        self._started_at = time.monotonic()
        for scfg in self.cfg.sources:
            self._start_source(scfg)
        for name, target in (
            ("prep", self._prep_loop),
            ("infer", self._infer_loop),
            ("post", self._post_loop),
            ("track", self._track_loop),
        ):
            t = threading.Thread(target=self._guard(target), name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def _start_sinks(self) -> None:
        from edgewatch.sinks import build_sink

        if any(s.type == "zmq" for s in self.cfg.sinks):
            import zmq

            self._zmq_context = zmq.Context()
        publish_embedding = bool(self.cfg.labeler and self.cfg.labeler.publish_embedding)
        try:
            for i, scfg in enumerate(self.cfg.sinks):
                sink = build_sink(
                    scfg,
                    self.metrics,
                    zmq_context=self._zmq_context,
                    on_quit=self.stop,
                    mask_format=self.cfg.detector.mask_format,
                    publish_embedding=publish_embedding,
                )
                if sum(1 for s in self.cfg.sinks if s.type == scfg.type) > 1:
                    sink.name = f"{scfg.type}{i}"
                worker = SinkWorker(sink, self.metrics, scfg.queue_size, scfg.sources)
                worker.start()
                self._sinks.append(worker)
        except EdgewatchError:
            self._stop_sinks(time.monotonic() + 2.0)
            raise

    def _stop_sinks(self, deadline: float) -> None:
        if not self._sinks_stopped:
            self._sinks_stopped = True
            for w in self._sinks:
                w.stop(deadline)
        self._close_zmq()

    def _start_source(self, scfg: SourceConfig) -> None:
        policy = Policy.DROP_OLDEST if (scfg.live or scfg.paced) else Policy.BLOCK
        src = build_source(scfg, self.metrics, self._on_event)
        run = _SourceRun(
            scfg, src, BoundedQueue(scfg.queue_size, policy, self._ready), threading.Event()
        )
        run.thread = threading.Thread(
            target=self._source_loop, args=(run,), name=f"source-{scfg.id}", daemon=True
        )
        with self._sources_lock:
            self._sources[scfg.id] = run
            # stop() sets its flag before it lists the sources: a stop asked for
            # while the models loaded is seen here or by stop(), never by neither
            if self._stop.is_set():
                run.stop.set()
        run.thread.start()

    def stop(self) -> None:
        """Ask every source to stop, then finalize files.

        Frames queued from file sources are still processed (every frame of a
        file counts); frames queued from live sources are stale the moment the
        camera stops, so they are dropped and counted (``stage="shutdown"``),
        which keeps a many-camera stop within ``shutdown_timeout``.
        """
        if not self._stop.is_set():
            log.info("stopping: draining queues (deadline %.1f s)", self.cfg.shutdown_timeout)
        self._stop.set()
        with self._sources_lock:
            runs = list(self._sources.values())
        for run in runs:
            run.stop.set()
            if run.queue.policy is Policy.DROP_OLDEST:
                left = run.queue.discard()  # counted as settled: events may follow
                if left:
                    self.metrics.inc(
                        "edgewatch_drops_total", left, source=run.cfg.id, stage="shutdown"
                    )
        with self._ready:
            self._ready.notify_all()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the pipeline has processed everything; True when done."""
        return self._done.wait(timeout)

    def run(self) -> RunSummary:
        """Start, wait for the end (or :meth:`stop`), shut down, summarize."""
        self.start()
        try:
            while not self._done.wait(0.2):
                pass
        finally:
            self.shutdown()
        return self.summary()

    def shutdown(self) -> None:
        """Stop everything within ``shutdown_timeout`` and finalize sinks."""
        self.stop()
        with self._reload_lock:  # a reload in flight ends first; later ones are refused
            self.stop()  # and what it started stops too
        deadline = time.monotonic() + self.cfg.shutdown_timeout
        if not self._done.wait(max(0.0, deadline - time.monotonic())):
            log.warning("shutdown deadline reached; abandoning queued frames")
            self._hard_stop.set()
            self._close_stage_queues()
        for t in self._threads:
            t.join(max(0.1, deadline - time.monotonic()))
        for t in self._threads:
            if t.is_alive():
                # An inference call cannot be interrupted; leaving it running
                # while the interpreter exits aborts the process inside ONNX
                # Runtime, so wait for the call in progress to return.
                log.warning("waiting for the %s stage to finish its current call", t.name)
                t.join(_STAGE_GRACE_S)
        with self._sources_lock:
            runs = list(self._sources.values())
        for run in [*runs, *self._retired]:
            if run.thread is not None:
                run.thread.join(max(0.1, deadline - time.monotonic()))
        self._elapsed = time.monotonic() - self._started_at if self._started_at else 0.0
        for run in runs:
            self._flush_events(run, force=True)
        self._stop_sinks(max(deadline, time.monotonic() + 2.0))
        if self._labeler is not None:
            self._labeler.stop()
        if self._health is not None:
            self._health.stop()
        if self._bar is not None:
            self._bar.close()

    def _close_stage_queues(self) -> None:
        for q in (self._infer_q, self._post_q, self._track_q):
            q.close()

    def _close_zmq(self) -> None:
        if self._zmq_context is not None:
            self._zmq_context.term()
            self._zmq_context = None

    def _guard(self, fn: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                fn()
            except Exception as e:  # a stage died: stop the run, report why
                log.exception("stage %s failed", threading.current_thread().name)
                self._fatal = mask(f"{threading.current_thread().name}: {e}")
                self._hard_stop.set()
                self.stop()
                self._close_stage_queues()
                self._done.set()

        return run

    # ------------------------------------------------------------------ sources

    def _on_event(self, ev: SourceEvent) -> None:
        """Publish a source event after the frames that were read before it."""
        with self._sources_lock:
            run = self._sources.get(ev.source_id)
        if run is not None:
            with self._events_lock:
                if run.pending_events or run.settled() < run.frames_in:
                    run.pending_events.append((run.frames_in, ev))
                    return
        self._publish_event(ev)

    def _publish_event(self, ev: SourceEvent) -> None:
        for w in self._sinks:
            w.submit(ev)

    def _flush_events(self, run: _SourceRun, force: bool = False) -> None:
        with self._events_lock:
            while run.pending_events and (force or run.pending_events[0][0] <= run.settled()):
                self._publish_event(run.pending_events.pop(0)[1])

    def _source_loop(self, run: _SourceRun) -> None:
        src, q = run.source, run.queue
        try:
            for frame in src.frames(run.stop):
                run.frames_in += 1
                run.last_frame_time = time.time()
                self.metrics.inc("edgewatch_frames_total", source=run.cfg.id, stage="decode")
                try:
                    evicted = q.put(frame, run.stop)
                except Closed:
                    break
                if evicted is not None:
                    self.metrics.inc("edgewatch_drops_total", source=run.cfg.id, stage="queue")
                if run.stop.is_set():
                    break
        except SourceError as e:
            run.error = mask(str(e))
            src.set_state(SourceState.FAILED, run.error)
            log.error("source %s failed: %s", run.cfg.id, run.error)
            src.emit(EventKind.FAILED, run.error)
        except Exception as e:  # an unexpected decoder error must not kill the process
            run.error = mask(f"{type(e).__name__}: {e}")
            src.set_state(SourceState.FAILED, run.error)
            log.exception("source %s crashed", run.cfg.id)
            src.emit(EventKind.FAILED, run.error)
        finally:
            try:
                src.close()
            finally:
                if src.state not in (SourceState.FAILED,):
                    src.set_state(SourceState.STOPPED if run.stop.is_set() else SourceState.ENDED)
                run.finished = True
                with self._ready:
                    self._ready.notify_all()

    # ------------------------------------------------------------------ stages

    def _gather(self) -> list[Frame] | None:
        """Up to ``max_batch`` frames, round-robin across sources; None at the end."""
        assert self._detector is not None
        max_batch = self._detector.max_batch
        while not self._hard_stop.is_set():
            reloads = self._reload_gen  # read first: a reload after it is seen below
            with self._sources_lock:
                runs = list(self._sources.values())
            # Start the round-robin one source further each call, so that with a
            # detector slower than the cameras every source gets its turn.
            if runs:
                k = self._rr % len(runs)
                runs = runs[k:] + runs[:k]
                self._rr += 1
            batch: list[Frame] = []
            progress = True
            while len(batch) < max_batch and progress:
                progress = False
                for run in runs:
                    if len(batch) >= max_batch:
                        break
                    frame = run.queue.get_nowait()
                    if frame is not None:
                        batch.append(frame)
                        progress = True
            if batch:
                return batch
            if (
                all(r.finished and len(r.queue) == 0 for r in runs)
                # not while a reload swaps sources (a changed only source is
                # stopped before its successor starts), nor after one changed them
                and not self._reload_lock.locked()
                and reloads == self._reload_gen
            ):
                return None
            with self._ready:
                self._ready.wait(0.05)
        return None

    def _prep_loop(self) -> None:
        assert self._detector is not None
        while True:
            batch = self._gather()
            if batch is None:
                break
            t0 = time.perf_counter()
            prep = self._preprocess(batch)
            if prep is None:
                continue
            batch, prepared = prep
            pre_ms = (time.perf_counter() - t0) * 1000
            try:
                self._infer_q.put(_Work(batch, prepared, pre_ms), self._hard_stop)
            except Closed:
                return
        try:
            self._infer_q.put(_END)
        except Closed:
            return

    def _preprocess(self, batch: list[Frame]) -> tuple[list[Frame], Prepared] | None:
        """Letterbox ``batch``; a frame that cannot be is skipped, counted
        (``edgewatch_drops_total{stage="preprocess"}``) and logged (rate-limited),
        the others go on. None when no frame is left."""
        assert self._detector is not None
        try:
            return batch, self._detector.preprocess([f.image for f in batch])
        except (EdgewatchError, cv2.error, ValueError):
            if len(batch) == 1:
                self._skip_frame(batch[0], sys.exc_info()[1])
                return None
        kept = []  # one bad frame in the batch: find it, keep the rest
        for frame in batch:
            try:
                self._detector.preprocess([frame.image])
                kept.append(frame)
            except (EdgewatchError, cv2.error, ValueError) as e:
                self._skip_frame(frame, e)
        if not kept:
            return None
        return kept, self._detector.preprocess([f.image for f in kept])

    def _skip_frame(self, frame: Frame, err: BaseException | None) -> None:
        sid = frame.source_id
        self.metrics.inc("edgewatch_drops_total", source=sid, stage="preprocess")
        now = time.monotonic()
        if now - self._last_skip_log.get(sid, -60.0) >= 10.0:
            self._last_skip_log[sid] = now
            log.warning(
                "source %s: frame %d (%s) skipped, cannot preprocess it: %s",
                sid,
                frame.index,
                "x".join(map(str, frame.image.shape)),
                mask(str(err)),
            )
        with self._sources_lock:
            run = self._sources.get(sid)
        if run is not None:
            run.skipped += 1
            if run.pending_events:
                self._flush_events(run)

    def _items(self, q: BoundedQueue[_T]) -> Iterator[_T]:
        """Items of a stage queue until its end marker (or a hard stop)."""
        while True:
            item = q.get(0.2)
            if item is None:
                if self._hard_stop.is_set():
                    return
                continue
            if item is _END:
                return
            yield item

    def _end(self, q: BoundedQueue[_T]) -> None:
        """Pass the end marker on (not after a hard stop: the queue is closed)."""
        if not self._hard_stop.is_set():
            try:
                q.put(cast("_T", _END))
            except Closed:
                return

    def _infer_loop(self) -> None:
        assert self._detector is not None
        for work in self._items(self._infer_q):
            assert isinstance(work, _Work)
            t0 = time.perf_counter()
            outputs = self._detector.infer(work.prepared)
            infer_ms = (time.perf_counter() - t0) * 1000
            try:
                self._post_q.put(_Inferred(work, outputs, infer_ms), self._hard_stop)
            except Closed:
                return
        self._end(self._post_q)

    def _post_loop(self) -> None:
        """Decode and NMS batch k here while the infer thread runs batch k+1."""
        assert self._detector is not None
        for item in self._items(self._post_q):
            assert isinstance(item, _Inferred)
            work = item.work
            t0 = time.perf_counter()
            dets = self._detector.postprocess(item.outputs, work.prepared)
            post_ms = (time.perf_counter() - t0) * 1000
            n = len(work.frames)
            timing = {
                "preprocess": work.pre_ms / n,
                "inference": item.infer_ms / n,
                "postprocess": post_ms / n,
            }
            timing["detect"] = timing["preprocess"] + timing["inference"] + timing["postprocess"]
            for frame, det in zip(work.frames, dets, strict=True):
                try:
                    self._track_q.put((frame, det, dict(timing)), self._hard_stop)
                except Closed:
                    return
        self._end(self._track_q)

    def _track_loop(self) -> None:
        for item in self._items(self._track_q):
            frame, det, timing = cast("tuple[Frame, sv.Detections, dict[str, float]]", item)
            self._finish_frame(frame, det, timing)
        self._done.set()

    def _tracker_for(self, run: _SourceRun | None, frame: Frame) -> Tracker | None:
        if run is None:
            return None
        if run.tracker is None:
            run.tracker = build_tracker(
                self.cfg.tracker, frame.fps or 30.0, self.metrics, source=frame.source_id
            )
            if self._labeler is not None and isinstance(run.tracker, BotSort):
                run.tracker.expect_feedback()
        elif frame.generation != run.generation:
            # One rule, the tracker's: a gap it keeps lost tracks over is bridged
            # (IDs and labels continue); a longer one starts it afresh.
            gap = frame.wall_time - run.last_wall
            keep_s = run.tracker.keeps_tracks_for_s()
            if gap > keep_s:
                log.info(
                    "source %s: gap of %.1f s after reopening (> %.1f s), tracker reset",
                    frame.source_id,
                    gap,
                    keep_s,
                )
                run.tracker.reset()
                self.metrics.inc("edgewatch_tracker_resets_total", source=frame.source_id)
                if self._labeler is not None:
                    self._labeler.forget_source(frame.source_id)
            else:
                run.tracker.coast(gap)
        run.generation, run.last_wall = frame.generation, frame.wall_time
        return run.tracker

    def _finish_frame(self, frame: Frame, det: sv.Detections, timing: dict[str, float]) -> None:
        with self._sources_lock:
            run = self._sources.get(frame.source_id)
        t0 = time.perf_counter()
        tracker = self._tracker_for(run, frame)
        if tracker is not None:
            det = tracker.update(det, frame.image)
        t1 = time.perf_counter()
        timing["track"] = (t1 - t0) * 1000
        if self._labeler is not None:
            det = self._labeler.process(frame, det)
            if isinstance(tracker, BotSort):
                det = _feed_appearance(tracker, det)
            timing["label"] = (time.perf_counter() - t1) * 1000
        timing["decode"] = frame.decode_ms
        timing["total"] = max(0.0, (time.time() - frame.wall_time) * 1000)
        assert self._detector is not None
        result = FrameResult(frame, det, self._detector.names, timing)
        for w in self._sinks:
            w.submit(result)
        if self.on_result is not None:
            self.on_result(result)
        self._account(run, frame, timing)

    def _account(self, run: _SourceRun | None, frame: Frame, timing: dict[str, float]) -> None:
        sid = frame.source_id
        self.clock.add(timing)
        self.metrics.inc("edgewatch_frames_total", source=sid, stage="publish")
        self.metrics.observe("edgewatch_latency_seconds", timing["total"] / 1000, source=sid)
        for stage in _STAGE_SERIES:
            ms = timing.get(stage)  # "label" only when the labeler runs
            if ms is not None:
                self.metrics.observe("edgewatch_stage_seconds", ms / 1000, source=sid, stage=stage)
        if run is not None:
            run.frames_out += 1
            if run.pending_events:
                self._flush_events(run)
            now = time.monotonic()
            run.fps_window.append(now)
            while run.fps_window and now - run.fps_window[0] > 5.0:
                run.fps_window.pop(0)
            span = now - run.fps_window[0] if len(run.fps_window) > 1 else 0.0
            fps = (len(run.fps_window) - 1) / span if span > 0 else 0.0
            self.metrics.set("edgewatch_fps", fps, source=sid)
        if self.progress:
            self._tick()

    def _tick(self) -> None:
        if self._bar is None:
            from tqdm import tqdm

            total = sum(getattr(r.source, "total_frames", 0) or 0 for r in self._sources.values())
            self._bar = tqdm(
                total=total or None,
                unit="frame",
                file=sys.stderr,
                dynamic_ncols=True,
                smoothing=0.1,
            )
        self._bar.update(1)

    # ------------------------------------------------------------------ reload / health

    def reload(self, new: PipelineConfig) -> list[str]:
        """Apply a new config's source changes live; return what needs a restart.

        Reloads run one at a time; once :meth:`stop` was called a reload is
        refused (logged, nothing changes) and returns ``[]``. Removed and changed
        sources stop (frames still queued for them are dropped and counted as
        ``stage="reload"``) before changed and added ones start; the others are
        not touched.
        """
        from edgewatch.pipeline.reload import diff_sources, reload_blockers

        with self._reload_lock:
            if self._stop.is_set():
                log.warning("reload: refused, the pipeline is stopping")
                return []
            blockers = reload_blockers(self.cfg, new)
            diff = diff_sources(self.cfg, new)
            try:
                for sid in [*diff.removed, *(c.id for c in diff.changed)]:
                    self._retire_source(sid)
                for scfg in [*diff.changed, *diff.added]:
                    if self._stop.is_set():
                        log.warning("reload: stopping, source %s not started", scfg.id)
                        continue
                    self._start_source(scfg)
                    log.info("reload: source %s started", scfg.id)
                self.cfg = self.cfg.model_copy(update={"sources": new.sources})
            finally:
                self._reload_gen += 1
        for b in blockers:
            log.warning("reload: %s (restart edgewatch to apply)", b)
        return blockers

    def _retire_source(self, sid: str) -> None:
        """Stop one source for a reload and forget it (under ``_reload_lock``)."""
        with self._sources_lock:
            run = self._sources.get(sid)
        if run is None:
            return
        run.stop.set()
        if run.thread is not None:
            run.thread.join(self.cfg.shutdown_timeout)
            if run.thread.is_alive():
                log.warning("reload: source %s still stopping; joined at shutdown", sid)
                self._retired.append(run)
        self._flush_events(run, force=True)
        with self._sources_lock:
            self._sources.pop(sid, None)
        left = len(run.queue.drain())
        if left:
            self.metrics.inc("edgewatch_drops_total", left, source=sid, stage="reload")
        log.info("reload: source %s stopped", sid)

    def health(self) -> dict[str, object]:
        """Per-source and per-sink state, for ``/healthz``."""
        now = time.time()
        sources: dict[str, object] = {}
        with self._sources_lock:
            runs = list(self._sources.values())
        bad = 0
        for run in runs:
            state = run.source.state
            if state in (SourceState.FAILED, SourceState.BACKOFF, SourceState.CONNECTING):
                bad += 1
            sid = run.cfg.id
            sources[sid] = {
                "state": state.value,
                "detail": mask(run.source.state_detail or run.error),
                "fps": round(self.metrics.gauge("edgewatch_fps", source=sid) or 0.0, 2),
                "frames": run.frames_out,
                "drops": int(self.metrics.counter_sum("edgewatch_drops_total", source=sid)),
                "reconnects": int(self.metrics.counter("edgewatch_reconnects_total", source=sid)),
                "last_frame_age_s": (
                    round(now - run.last_frame_time, 3) if run.last_frame_time else None
                ),
            }
        sinks = {
            w.name: {
                "state": "error"
                if w.status.errors and now - w.status.last_error_time < 30
                else "ok",
                "error": w.status.last_error,
                "drops": int(
                    self.metrics.counter_sum("edgewatch_drops_total", stage=f"sink:{w.name}")
                ),
                # A ZeroMQ subscriber that does not keep up (the socket's high-water mark).
                "hwm_drops": int(
                    self.metrics.counter_sum("edgewatch_drops_total", stage=f"hwm:{w.name}")
                ),
            }
            for w in self._sinks
        }
        status = (
            "ok"
            if bad == 0 and not self._fatal
            else ("failing" if bad == len(runs) or self._fatal else "degraded")
        )
        return {
            "status": status,
            "sources": sources,
            "sinks": sinks,
            "uptime_s": round(time.monotonic() - self._started_at, 1) if self._started_at else 0,
        }

    def summary(self) -> RunSummary:
        with self._sources_lock:
            runs = list(self._sources.values())
        drops: dict[str, float] = {}
        for run in runs:
            for stage in ("queue", "preprocess", "labeler"):
                n = self.metrics.counter("edgewatch_drops_total", source=run.cfg.id, stage=stage)
                if n:
                    drops[f"{run.cfg.id}/{stage}"] = n
        for w in self._sinks:
            for stage in (f"sink:{w.name}", f"hwm:{w.name}"):
                n = self.metrics.counter_sum("edgewatch_drops_total", stage=stage)
                if n:
                    drops[stage] = n
        return RunSummary(
            frames={r.cfg.id: r.frames_out for r in runs},
            elapsed_s=self._elapsed or (time.monotonic() - self._started_at),
            stage_ms=self.clock.means(),
            drops=drops,
            decode_errors=self.metrics.counter_sum("edgewatch_decode_errors_total"),
            sink_errors={w.name: w.status.errors for w in self._sinks if w.status.errors},
            failed_sources={r.cfg.id: r.error for r in runs if r.error},
            error=self._fatal,
            sink_ms={w.name: w.status.mean_ms for w in self._sinks if w.status.handled},
        )


def _feed_appearance(tracker: BotSort, det: sv.Detections) -> sv.Detections:
    """Give BoT-SORT the labeler's track embeddings; renumber re-linked tracks."""
    emb = det.data.get(DATA_EMBEDDING)
    if emb is None or det.tracker_id is None or not len(det):
        return det
    valid = det.data.get(DATA_EMBEDDING_VALID)
    relinked = tracker.observe_embeddings(
        det.tracker_id, np.asarray(emb), None if valid is None else np.asarray(valid)
    )
    if not relinked:
        return det
    ids = np.array([relinked.get(int(t), int(t)) for t in det.tracker_id], dtype=int)
    return sv.Detections(
        xyxy=det.xyxy,
        mask=det.mask,
        confidence=det.confidence,
        class_id=det.class_id,
        tracker_id=ids,
        data=dict(det.data),
        metadata=dict(det.metadata),
    )
