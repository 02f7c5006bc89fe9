"""CLIP zero-shot labeling of tracks, off the frame path.

:class:`Labeler` is the pipeline stage. The runner calls, per source and in
frame order, ``tracks = labeler.process(frame, tracks)`` with the tracker's
output. ``process`` never blocks on the encoder: it picks which tracks to crop
this frame, copies those crops into a bounded queue served by one worker
thread, and returns a copy of ``tracks`` carrying each track's *current*
aggregated label.

Scheduling, per track (key: source, tracker epoch, tracker id), only for the
detector classes in ``classes``:

* the first crop as soon as the track appears, then one every ``every``
  frames, or sooner when the box area grew ``regrow`` times since the last crop;
* boxes whose width or height is below ``min_size`` pixels are not cropped
  (the track stays due and is tried again next frame);
* at most ``max_crops_per_frame`` crops per call, unlabelled tracks first, then
  the longest-waiting; a track with a crop still queued gets no second one.

A track's state lives until it is unseen for ``FORGET_FRAMES`` frames of its
source or ``FORGET_SECONDS``, or until :meth:`Labeler.forget_source` (the
runner reset the source's tracker, so its IDs restart): a reconnect alone
forgets nothing, since the tracker bridges a short gap with the same IDs. Each
reset starts a new *epoch* of the source, so a crop still queued for an old
track never lands on a new track that took its ID.

The queue holds ``queue_size`` crops; when full, the OLDEST crop is dropped and
counted in ``edgewatch_drops_total{stage="labeler", source=...}``. Crops queued and
encoded are counted in ``edgewatch_labeler_crops_total{source}`` and
``edgewatch_labeler_encoded_total{source}``; encoder time per batch goes to
``edgewatch_stage_seconds{stage="labeler"}``. The worker
takes up to ``batch`` crops from every source into one image-encoder call.

Aggregation (:class:`LabelAggregator`): the label is the argmax of the mean of
the track's last ``window`` probability vectors; when that mean probability is
below ``min_score`` the label is ``"unknown"``. Each of ``groups`` is
aggregated independently of the others and of ``labels``.

Output ``.data`` keys (see :mod:`edgewatch.types`):

* ``DATA_LABEL``: object array of str; :data:`NO_LABEL` (``""``, which the wire
  omits) while a track has no result yet (its ``DATA_LABEL_SCORE`` is then
  NaN), for rows without a tracker id or outside ``classes``, and always when
  only ``groups`` (no ``labels``) are configured;
* ``DATA_LABEL_SCORE``: float32 mean probability of the label, NaN when none yet;
* ``DATA_LABEL_GROUPS`` (only when ``groups`` are configured): object array of
  ``dict[group, (label, score)]``, groups without a result yet left out;
* ``DATA_EMBEDDING``: ``(N, D)`` float32, the L2-normalised mean of the track's
  last ``window`` image embeddings; rows of zeros where none yet;
* :data:`DATA_EMBEDDING_VALID`: ``(N,)`` bool, True where the row is a real embedding.

Prompts: each label is written into every template; the normalised text
embeddings of one label are averaged and renormalised (prompt ensembling).
They are cached in ``cache_dir`` as ``.npz`` keyed by the SHA-256 of the text
encoder file, the tokenizer file and the prompts.
"""

from __future__ import annotations

import collections
import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import supervision as sv

from edgewatch import types
from edgewatch.config import LabelerConfig
from edgewatch.errors import ConfigError, ModelError
from edgewatch.metrics import Metrics
from edgewatch.pipeline.models.clip import ClipModel, l2_normalize
from edgewatch.pipeline.models.clip_tokenizer import find_tokenizer_file

log = logging.getLogger(__name__)

DATA_EMBEDDING_VALID = types.DATA_EMBEDDING_VALID
UNKNOWN = "unknown"
#: The label of a track without any result yet.
NO_LABEL = ""
#: The default group: the config's ``labels``.
MAIN_GROUP = ""
#: A track unseen for this many frames of its source (or seconds) is forgotten.
FORGET_FRAMES = 300
FORGET_SECONDS = 120.0


class LabelAggregator:
    """Sliding mean of a track's probability vectors over one label set.

    >>> agg = LabelAggregator(["cat", "dog"], window=2, min_score=0.6)
    >>> agg.label()
    ('', nan)
    >>> agg.add([0.9, 0.1]); agg.add([0.5, 0.5]); agg.label()
    ('cat', 0.7)
    >>> agg.add([0.3, 0.7]); agg.label()   # window: (0.5, 0.5), (0.3, 0.7)
    ('dog', 0.6)
    """

    def __init__(self, labels: Sequence[str], window: int, min_score: float) -> None:
        if not labels:
            raise ValueError("LabelAggregator needs at least one label")
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.labels = list(labels)
        self.min_score = float(min_score)
        self._probs: collections.deque[np.ndarray] = collections.deque(maxlen=window)

    def add(self, probs: Sequence[float] | np.ndarray) -> None:
        """Append one probability vector (one entry per label)."""
        p = np.asarray(probs, dtype=np.float64)
        if p.shape != (len(self.labels),):
            raise ValueError(f"expected {len(self.labels)} probabilities, got shape {p.shape}")
        self._probs.append(p)

    def __len__(self) -> int:
        return len(self._probs)

    def label(self) -> tuple[str, float]:
        """``(label, mean probability)``: ``("", nan)`` when empty; "unknown" below min_score."""
        if not self._probs:
            return NO_LABEL, float("nan")
        mean = np.mean(np.stack(self._probs), axis=0)
        best = int(np.argmax(mean))
        score = round(float(mean[best]), 6)
        return (self.labels[best] if score >= self.min_score else UNKNOWN), score


TrackKey = tuple[str, int, int]


@dataclass
class _Track:
    """What the labeler knows of one track; guarded by ``Labeler._lock``."""

    groups: dict[str, LabelAggregator]
    embeddings: collections.deque[np.ndarray]
    last_seen_frame: int
    last_seen_time: float
    last_crop_frame: int | None = None
    last_crop_area: float = 0.0
    pending: int = 0


@dataclass(frozen=True)
class _Request:
    key: TrackKey
    crop: np.ndarray  # HxWx3 BGR uint8, owned copy


@dataclass
class _Queue:
    """Bounded FIFO that drops its oldest item when full."""

    size: int
    items: collections.deque[_Request] = field(default_factory=collections.deque)
    cond: threading.Condition = field(default_factory=threading.Condition)
    busy: bool = False
    closed: bool = False


class Labeler:
    """The CLIP labeling stage; see the module docstring for its behaviour."""

    def __init__(
        self, cfg: LabelerConfig, class_names: Mapping[int, str], metrics: Metrics
    ) -> None:
        self.cfg = cfg
        self.class_names = dict(class_names)
        self.metrics = metrics
        self.model: ClipModel | None = None
        self.text_embeddings: dict[str, np.ndarray] = {}
        self.group_labels: dict[str, list[str]] = {}
        self.cache_hit = False
        self._class_ids: frozenset[int] | None = None
        self._tracks: dict[TrackKey, _Track] = {}
        #: Tracker epoch per source: grows when the source's tracker is reset.
        self._epochs: dict[str, int] = {}
        self._lock = threading.Lock()
        self._queue = _Queue(cfg.queue_size)
        self._worker: threading.Thread | None = None

    # ------------------------------------------------------------------ life

    def start(self) -> None:
        """Load the model, encode (or load cached) prompts, start the worker thread."""
        self._class_ids = self._resolve_classes()
        self.model = self._load_model()
        self.group_labels = self._label_groups()
        self.text_embeddings = self._prompt_embeddings()
        self._queue = _Queue(self.cfg.queue_size)
        self._worker = threading.Thread(target=self._run, name="labeler", daemon=True)
        self._worker.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the worker (queued crops are discarded) and join it."""
        q = self._queue
        with q.cond:
            q.closed = True
            q.items.clear()
            q.cond.notify_all()
        if self._worker is not None:
            self._worker.join(timeout)
            if self._worker.is_alive():
                log.warning("labeler worker did not stop within %.1f s", timeout)
            self._worker = None

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until every queued crop is encoded; False on timeout (for tests and draining)."""
        q = self._queue
        deadline = time.monotonic() + timeout
        with q.cond:
            while q.items or q.busy:
                left = deadline - time.monotonic()
                if left <= 0 or q.closed:
                    return False
                q.cond.wait(left)
        return True

    # ------------------------------------------------------------------ start-up helpers

    def _resolve_classes(self) -> frozenset[int] | None:
        if self.cfg.classes is None:
            return None
        by_name = {name: cid for cid, name in self.class_names.items()}
        ids = set()
        for c in self.cfg.classes:
            if isinstance(c, int):
                ids.add(c)
            elif c in by_name:
                ids.add(by_name[c])
            else:
                known = ", ".join(sorted(by_name)) or "none"
                raise ConfigError(
                    f"labeler.classes: unknown class {c!r} (detector classes: {known})"
                )
        return frozenset(ids)

    def _label_groups(self) -> dict[str, list[str]]:
        if MAIN_GROUP in self.cfg.groups:
            raise ConfigError("labeler.groups: a group needs a non-empty name")
        groups = {MAIN_GROUP: list(self.cfg.labels)} if self.cfg.labels else {}
        groups.update({name: list(labels) for name, labels in self.cfg.groups.items()})
        if not groups:
            raise ConfigError("labeler.labels: give at least one label (or groups)")
        return groups

    def _cache_key(self) -> str:
        assert self.model is not None
        h = hashlib.sha256()
        for path in (self.model.files.text, find_tokenizer_file(self.model.files.root)):
            with open(path, "rb") as f:
                while chunk := f.read(1 << 20):
                    h.update(chunk)
        h.update(json.dumps([self.group_labels, self.cfg.templates], sort_keys=True).encode())
        return h.hexdigest()

    def _prompt_embeddings(self) -> dict[str, np.ndarray]:
        """``{group: (L, D) float32}`` ensembled prompt embeddings, via the on-disk cache."""
        assert self.model is not None
        key = self._cache_key()
        path = Path(self.cfg.cache_dir) / f"clip-text-{key[:32]}.npz"
        cached = _load_cache(path, self.group_labels, self.model.embed_dim)
        self.cache_hit = cached is not None
        if cached is not None:
            log.info("labeler: text embeddings from cache %s", path)
            return cached
        out = {}
        for group, labels in self.group_labels.items():
            prompts = [t.format(lb) for lb in labels for t in self.cfg.templates]
            emb = self.model.encode_text(prompts).reshape(len(labels), len(self.cfg.templates), -1)
            out[group] = l2_normalize(emb.mean(axis=1))
        _save_cache(path, out)
        return out

    # ------------------------------------------------------------------ frame path

    def process(self, frame: types.Frame, tracks: sv.Detections) -> sv.Detections:
        """Schedule crops of ``tracks`` from ``frame`` and return a labelled copy (never blocks)."""
        if self.model is None:
            raise ModelError("Labeler.process() called before start()")
        keys = self._keys(frame, tracks)
        now = time.monotonic()
        with self._lock:
            self._forget(frame, now)
            due = self._due(frame, tracks, keys, now)
        for key, crop in due:
            self.metrics.inc("edgewatch_labeler_crops_total", source=frame.source_id)
            self._enqueue(_Request(key, crop))
        with self._lock:
            return self._attach(tracks, keys)

    def _keys(self, frame: types.Frame, tracks: sv.Detections) -> list[TrackKey | None]:
        """Track key per row; None for rows without a tracker id or outside ``classes``."""
        n = len(tracks)
        tids = tracks.tracker_id if tracks.tracker_id is not None else np.full(n, -1)
        cids = tracks.class_id if tracks.class_id is not None else np.full(n, -1)
        epoch = self._epochs.get(frame.source_id, 0)
        out: list[TrackKey | None] = []
        for tid, cid in zip(tids, cids, strict=True):
            wanted = self._class_ids is None or int(cid) in self._class_ids
            out.append((frame.source_id, epoch, int(tid)) if wanted and tid >= 0 else None)
        return out

    def _due(
        self, frame: types.Frame, tracks: sv.Detections, keys: list[TrackKey | None], now: float
    ) -> list[tuple[TrackKey, np.ndarray]]:
        """Pick this frame's crops (caller holds the lock); updates the tracks' schedule."""
        candidates = []
        h, w = frame.image.shape[:2]
        for row, key in enumerate(keys):
            if key is None:
                continue
            st = self._tracks.get(key)
            if st is None:
                st = self._tracks[key] = self._new_track(frame.index, now)
            st.last_seen_frame, st.last_seen_time = frame.index, now
            box = _pixel_box(tracks.xyxy[row], w, h)
            bw, bh = box[2] - box[0], box[3] - box[1]
            if st.pending or min(bw, bh) < self.cfg.min_size:
                continue
            area = float(bw * bh)
            last = st.last_crop_frame
            if (
                last is None
                or frame.index - last >= self.cfg.every
                or area >= self.cfg.regrow * st.last_crop_area
            ):
                candidates.append((last is not None, last or 0, row, key, box, area))
        candidates.sort(key=lambda c: (c[0], c[1], c[2]))
        out = []
        for _, _, _, key, (x1, y1, x2, y2), area in candidates[: self.cfg.max_crops_per_frame]:
            st = self._tracks[key]
            st.last_crop_frame, st.last_crop_area = frame.index, area
            st.pending += 1
            out.append((key, frame.image[y1:y2, x1:x2].copy()))
        return out

    def _new_track(self, index: int, now: float) -> _Track:
        groups = {
            g: LabelAggregator(lbls, self.cfg.window, self.cfg.min_score)
            for g, lbls in self.group_labels.items()
        }
        return _Track(groups, collections.deque(maxlen=self.cfg.window), index, now)

    def forget_source(self, source_id: str) -> None:
        """Forget every track of ``source_id``: its tracker was reset and its IDs restart.

        Call it from the thread that calls :meth:`process`, before the source's
        next frame; crops still queued for the old tracks are encoded but land nowhere.
        """
        with self._lock:
            self._epochs[source_id] = self._epochs.get(source_id, 0) + 1
            for k in [k for k in self._tracks if k[0] == source_id]:
                del self._tracks[k]

    def _forget(self, frame: types.Frame, now: float) -> None:
        """Drop tracks unseen for ``FORGET_SECONDS`` or ``FORGET_FRAMES`` (lock held)."""
        stale = [
            k
            for k, st in self._tracks.items()
            if now - st.last_seen_time > FORGET_SECONDS
            or (k[0] == frame.source_id and frame.index - st.last_seen_frame > FORGET_FRAMES)
        ]
        for k in stale:
            del self._tracks[k]

    def _enqueue(self, req: _Request) -> None:
        q = self._queue
        with q.cond:
            if q.closed:
                return
            dropped = q.items.popleft() if len(q.items) >= q.size else None
            q.items.append(req)
            q.cond.notify_all()
        if dropped is not None:
            self.metrics.inc("edgewatch_drops_total", stage="labeler", source=dropped.key[0])
            with self._lock:
                st = self._tracks.get(dropped.key)
                if st is not None:
                    st.pending = max(0, st.pending - 1)

    def _attach(self, tracks: sv.Detections, keys: list[TrackKey | None]) -> sv.Detections:
        """A copy of ``tracks`` with label, score, groups and embedding columns (lock held)."""
        assert self.model is not None
        n, dim = len(tracks), self.model.embed_dim
        labels = np.full(n, NO_LABEL, dtype=object)
        scores = np.full(n, np.nan, dtype=np.float32)
        groups = np.empty(n, dtype=object)
        emb = np.zeros((n, dim), dtype=np.float32)
        valid = np.zeros(n, dtype=bool)
        for row, key in enumerate(keys):
            st = self._tracks.get(key) if key is not None else None
            groups[row] = {}
            if st is None:
                continue
            if MAIN_GROUP in st.groups:
                labels[row], scores[row] = st.groups[MAIN_GROUP].label()
            groups[row] = {g: a.label() for g, a in st.groups.items() if g != MAIN_GROUP and len(a)}
            if st.embeddings:
                emb[row] = l2_normalize(np.mean(np.stack(st.embeddings), axis=0))
                valid[row] = True
        data = dict(tracks.data)
        data.update(
            {
                types.DATA_LABEL: labels,
                types.DATA_LABEL_SCORE: scores,
                types.DATA_EMBEDDING: emb,
                DATA_EMBEDDING_VALID: valid,
            }
        )
        if self.cfg.groups:
            data[types.DATA_LABEL_GROUPS] = groups
        return sv.Detections(
            xyxy=tracks.xyxy.copy(),
            mask=tracks.mask,
            confidence=tracks.confidence,
            class_id=tracks.class_id,
            tracker_id=tracks.tracker_id,
            data=data,
            metadata=dict(tracks.metadata),
        )

    # ------------------------------------------------------------------ worker

    def _take(self) -> list[_Request] | None:
        q = self._queue
        with q.cond:
            while not q.items and not q.closed:
                q.cond.wait()
            if q.closed:
                return None
            batch = [q.items.popleft() for _ in range(min(self.cfg.batch, len(q.items)))]
            q.busy = True
            return batch

    def _load_model(self) -> ClipModel:
        """Open the encoders from a thread at the worker's lower priority.

        ONNX Runtime starts its intra-op threads (``intra_op_num_threads`` other
        than 1) when a session is created, and a new thread inherits the niceness
        of the thread that creates it: sessions opened here keep all of the
        encoder's threads below detection, not only the worker's own.
        """

        def load() -> ClipModel:
            return ClipModel.load(
                self.cfg.model,
                device=self.cfg.device,
                intra_op_num_threads=self.cfg.intra_op_num_threads,
                metrics=self.metrics,
                logit_scale=self.cfg.logit_scale,
                crop_mode=self.cfg.crop_mode,
            )

        if not self.cfg.nice and self.cfg.priority != "idle":
            return load()
        box: dict[str, ClipModel | BaseException] = {}

        def run() -> None:
            self._lower_priority()
            try:
                box["model"] = load()
            except BaseException as e:  # re-raised in the caller's thread
                box["error"] = e

        t = threading.Thread(target=run, name="labeler-load", daemon=True)
        t.start()
        t.join()
        error, model = box.get("error"), box.get("model")
        if isinstance(error, BaseException):
            raise error
        assert isinstance(model, ClipModel)
        return model

    def _lower_priority(self) -> None:
        """Run the encoder at a lower CPU priority than detection (Linux: per thread).

        ``nice`` alone was measured to cost detection 14.5 % of its fps on two
        saturated cores (ONNX Runtime's intra-op threads wait at each operator
        for the slowest of them, so any core the encoder takes stalls them all);
        ``priority: idle`` (SCHED_IDLE) gives the encoder only idle CPU time.
        """
        if not self.cfg.nice and self.cfg.priority != "idle":
            return
        tid = threading.get_native_id()
        try:
            if self.cfg.nice:
                os.setpriority(os.PRIO_PROCESS, tid, self.cfg.nice)
        except (AttributeError, OSError) as e:
            log.warning("labeler: cannot lower the worker's priority: %s", e)
            self.metrics.inc("edgewatch_fallbacks_total", stage="labeler", reason="nice")
        if self.cfg.priority == "idle":
            try:
                os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0))
            except (AttributeError, OSError) as e:
                log.warning("labeler: cannot use SCHED_IDLE (%s); running at nice only", e)
                self.metrics.inc("edgewatch_fallbacks_total", stage="labeler", reason="idle")

    def _run(self) -> None:
        self._lower_priority()
        while (batch := self._take()) is not None:
            try:
                self._encode_batch(batch)
            except (ModelError, ValueError) as e:  # ClipModel wraps ORT failures in ModelError
                log.warning("labeler: encoding %d crops failed: %s", len(batch), e)
                for req in batch:
                    self.metrics.inc("edgewatch_drops_total", stage="labeler", source=req.key[0])
            finally:
                with self._lock:
                    for req in batch:
                        st = self._tracks.get(req.key)
                        if st is not None:
                            st.pending = max(0, st.pending - 1)
                with self._queue.cond:
                    self._queue.busy = False
                    self._queue.cond.notify_all()

    def _encode_batch(self, batch: list[_Request]) -> None:
        assert self.model is not None
        t0 = time.perf_counter()
        img = self.model.encode_images([r.crop for r in batch])
        probs = {g: self.model.zero_shot(img, t) for g, t in self.text_embeddings.items()}
        self.metrics.observe("edgewatch_stage_seconds", time.perf_counter() - t0, stage="labeler")
        with self._lock:
            for i, req in enumerate(batch):
                self.metrics.inc("edgewatch_labeler_encoded_total", source=req.key[0])
                st = self._tracks.get(req.key)
                if st is None:
                    continue
                st.embeddings.append(img[i])
                for g, p in probs.items():
                    st.groups[g].add(p[i])

    # ------------------------------------------------------------------ public helpers

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        """``(N, D)`` normalised text embeddings (after :meth:`start`)."""
        if self.model is None:
            raise ModelError("Labeler.encode_text() called before start()")
        return self.model.encode_text(texts)

    def encode_images(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """``(N, D)`` normalised embeddings of HxWx3 BGR uint8 crops (after :meth:`start`)."""
        if self.model is None:
            raise ModelError("Labeler.encode_images() called before start()")
        return self.model.encode_images(crops)

    def tracks_known(self) -> int:
        """How many tracks the labeler currently remembers (memory bound checks)."""
        with self._lock:
            return len(self._tracks)


def _pixel_box(xyxy: np.ndarray, width: int, height: int) -> tuple[int, int, int, int]:
    """Integer pixel box covering float ``xyxy`` (floor/ceil), clipped to the image."""
    x1 = min(max(int(np.floor(xyxy[0])), 0), width)
    y1 = min(max(int(np.floor(xyxy[1])), 0), height)
    x2 = min(max(int(np.ceil(xyxy[2])), x1), width)
    y2 = min(max(int(np.ceil(xyxy[3])), y1), height)
    return x1, y1, x2, y2


def _load_cache(
    path: Path, groups: Mapping[str, list[str]], dim: int
) -> dict[str, np.ndarray] | None:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            out = {g: np.asarray(z[f"g_{i}"], np.float32) for i, g in enumerate(groups)}
    except (OSError, KeyError, ValueError) as e:
        log.warning("labeler: ignoring unreadable text-embedding cache %s: %s", path, e)
        return None
    ok = all(out[g].shape == (len(lbls), dim) for g, lbls in groups.items())
    return out if ok else None


def _save_cache(path: Path, emb: Mapping[str, np.ndarray]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npz")
        arrays: dict[str, Any] = {f"g_{i}": e for i, e in enumerate(emb.values())}
        np.savez(tmp, **arrays)
        tmp.replace(path)
    except OSError as e:
        log.warning("labeler: cannot write text-embedding cache %s: %s", path, e)
