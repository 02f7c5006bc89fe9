"""Ultralytics YOLO (detect / segment / pose, raw or end-to-end) on ONNX Runtime.

Coordinates: the network sees a *letterboxed* image (resized by ``ratio`` and
padded by ``pad = (left, top)`` pixels); decoders work in those input pixels
and :func:`scale_boxes` / :func:`scale_coords` map back to source pixels
(``x_src = (x_in - left) / ratio``), clipped to the frame.

Output layouts understood (B = batch, N = anchors, nc = classes):

- detect ``(B, 4 + nc, N)``: cx, cy, w, h, then class scores (no objectness);
- segment ``(B, 4 + nc + nm, N)`` plus prototypes ``(B, nm, mh, mw)``;
- pose ``(B, 4 + nc + K*d, N)`` with keypoints x, y[, visibility] in input pixels;
- end-to-end / NMS-free ``(B, max_det, 6 + extra)``: x1, y1, x2, y2, score,
  class, then mask coefficients or keypoints; no NMS is run.

:class:`YoloDetector` splits work into ``preprocess`` / ``infer`` /
``postprocess`` so a runner can time each stage; ``predict`` does all three.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import supervision as sv

from edgewatch.config import DetectorConfig, Task
from edgewatch.errors import ModelError
from edgewatch.metrics import Metrics
from edgewatch.pipeline.models import onnx as ew_onnx
from edgewatch.pipeline.models.masks import protos_to_masks
from edgewatch.types import DATA_KEYPOINTS

logger = logging.getLogger(__name__)

PAD_VALUE = 114
#: Candidates kept (by score) before NMS, as Ultralytics ``max_nms``.
MAX_NMS = 30000

# --------------------------------------------------------------------------- geometry


def letterbox_params(
    shape: tuple[int, int],
    new_shape: tuple[int, int],
    stride: int = 32,
    auto: bool = False,
    scaleup: bool = True,
) -> tuple[float, tuple[int, int], tuple[int, int, int, int]]:
    """``(ratio, (new_w, new_h), (top, bottom, left, right))`` for a source
    ``shape = (h, w)`` letterboxed into ``new_shape = (h, w)`` (Ultralytics
    ``LetterBox`` rounding, but never below 1 px per side; ``auto`` pads only to
    a multiple of ``stride``)."""
    h, w = shape
    r = min(new_shape[0] / h, new_shape[1] / w)
    if not scaleup:
        r = min(r, 1.0)
    # at least one pixel: a 3x5000 strip is 0.384 px wide at 640 and cv2 refuses 0
    new_w, new_h = max(1, round(w * r)), max(1, round(h * r))
    pad_w, pad_h = new_shape[1] - new_w, new_shape[0] - new_h
    if auto:
        pad_w, pad_h = pad_w % stride, pad_h % stride
    dw, dh = pad_w / 2, pad_h / 2
    top, bottom = round(dh - 0.1), round(dh + 0.1)
    left, right = round(dw - 0.1), round(dw + 0.1)
    return r, (new_w, new_h), (top, bottom, left, right)


def letterbox(
    image: np.ndarray,
    new_shape: tuple[int, int] = (640, 640),
    stride: int = 32,
    auto: bool = False,
    scaleup: bool = True,
) -> tuple[np.ndarray, float, tuple[int, int]]:
    """Resize keeping aspect ratio and pad with 114 to ``new_shape = (h, w)``.

    Returns ``(padded, ratio, (pad_w, pad_h))`` where ``pad_w`` / ``pad_h`` are
    the pixels added on the left / top (the offset of the source image inside
    ``padded``), exactly as Ultralytics ``LetterBox`` (bilinear resize).

    >>> img, r, pad = letterbox(np.zeros((480, 640, 3), np.uint8), (640, 640))
    >>> img.shape, r, pad
    ((640, 640, 3), 1.0, (0, 80))
    """
    r, (new_w, new_h), (top, bottom, left, right) = letterbox_params(
        image.shape[:2], new_shape, stride, auto, scaleup
    )
    if (image.shape[1], image.shape[0]) != (new_w, new_h):
        image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    value = (PAD_VALUE,) * (image.shape[2] if image.ndim == 3 else 1)
    padded = cv2.copyMakeBorder(image, top, bottom, left, right, cv2.BORDER_CONSTANT, value=value)
    return padded, r, (left, top)


def scale_coords(
    points: np.ndarray, ratio: float, pad: tuple[int, int], shape: tuple[int, int]
) -> np.ndarray:
    """Map ``(..., 2)`` x, y from letterboxed input pixels to source pixels,
    clipped to ``[0, w] x [0, h]`` of ``shape = (h, w)``; float32 copy."""
    out = np.array(points, dtype=np.float32, copy=True)
    out[..., 0] = np.clip((out[..., 0] - pad[0]) / ratio, 0, shape[1])
    out[..., 1] = np.clip((out[..., 1] - pad[1]) / ratio, 0, shape[0])
    return out


def scale_boxes(
    boxes: np.ndarray, ratio: float, pad: tuple[int, int], shape: tuple[int, int]
) -> np.ndarray:
    """Map ``(N, 4)`` xyxy from letterboxed input pixels to source pixels
    (Ultralytics ``scale_boxes``), clipped to the frame ``shape = (h, w)``."""
    pts = np.asarray(boxes, dtype=np.float32).reshape(-1, 2, 2)
    return scale_coords(pts, ratio, pad, shape).reshape(-1, 4)


def xywh2xyxy(xywh: np.ndarray) -> np.ndarray:
    """``(N, 4)`` center x, center y, width, height -> x1, y1, x2, y2."""
    out = np.empty_like(xywh)
    half = xywh[:, 2:4] / 2
    out[:, :2] = xywh[:, :2] - half
    out[:, 2:] = xywh[:, :2] + half
    return out


# --------------------------------------------------------------------------- NMS


def box_iou_one(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one xyxy ``box`` against ``(N, 4)`` ``boxes`` (torchvision formula)."""
    iw = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    ih = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = iw * ih
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = area + areas - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def nms(
    boxes: np.ndarray,
    scores: np.ndarray,
    iou: float,
    class_ids: np.ndarray | None = None,
    max_det: int | None = None,
) -> np.ndarray:
    """Greedy NMS; indices of kept boxes, best score first.

    A box is suppressed by a higher-scoring kept box when their IoU is
    strictly greater than ``iou`` (torchvision semantics). With
    ``class_ids`` only boxes of the same class suppress each other (boxes are
    offset by ``class_id * (max coordinate + 1)``, the Ultralytics trick);
    without, NMS is class-agnostic. Equal scores keep input order.
    """
    n = len(scores)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    b = np.asarray(boxes, dtype=np.float64)
    if class_ids is not None:
        offset = float(np.abs(b).max()) + 1.0
        b = b + (np.asarray(class_ids, dtype=np.float64) * offset)[:, None]
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    limit = n if max_det is None else max_det
    keep: list[int] = []
    while order.size and len(keep) < limit:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        order = rest[box_iou_one(b[i], b[rest]) <= iou]
    return np.asarray(keep, dtype=np.int64)


# --------------------------------------------------------------------------- decoders


@dataclass(frozen=True)
class Decoded:
    """Kept detections of one image, in letterboxed input pixels.

    ``boxes`` (N, 4) xyxy float32, ``scores`` (N,) float32, ``class_ids`` (N,)
    int64, ``extra`` (N, E) float32: mask coefficients or flat keypoints.
    """

    boxes: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray
    extra: np.ndarray


def _filter_classes(cls: np.ndarray, classes: np.ndarray | None) -> np.ndarray:
    if classes is None:
        return np.ones(len(cls), dtype=bool)
    return np.isin(cls, classes)


def decode_raw(
    pred: np.ndarray,
    nc: int,
    conf: float,
    iou: float,
    *,
    classes: np.ndarray | None = None,
    agnostic: bool = False,
    max_det: int = 300,
) -> Decoded:
    """Decode one image's raw ``(4 + nc + E, N)`` output: best class per anchor,
    keep ``score > conf`` (and ``classes``), then NMS (Ultralytics
    ``non_max_suppression`` with ``multi_label=False``)."""
    pred = np.asarray(pred, dtype=np.float32)
    if nc < 1:
        raise ModelError(f"output has {pred.shape[0]} channels: no room for class scores")
    cls_scores = pred[4 : 4 + nc]
    score = cls_scores.max(axis=0)  # row-wise max is fast; argmax only on candidates
    idx = np.flatnonzero(score > conf)
    best = cls_scores[:, idx].argmax(axis=0).astype(np.int64)
    sel = _filter_classes(best, classes)
    idx, best = idx[sel], best[sel]
    if idx.size > MAX_NMS:
        top = np.argsort(-score[idx], kind="stable")[:MAX_NMS]
        idx, best = idx[top], best[top]
    cand = pred[:, idx].T
    boxes = xywh2xyxy(cand[:, :4])
    scores, cls = score[idx], best
    keep = nms(boxes, scores, iou, None if agnostic else cls, max_det)
    return Decoded(boxes[keep], scores[keep], cls[keep], cand[keep, 4 + nc :])


def decode_end2end(
    pred: np.ndarray, conf: float, *, classes: np.ndarray | None = None, max_det: int = 300
) -> Decoded:
    """Decode one image's NMS-free ``(M, 6 + E)`` output (x1, y1, x2, y2,
    score, class, extra): keep ``score > conf`` and ``classes``; no NMS."""
    pred = np.asarray(pred, dtype=np.float32)
    cls = pred[:, 5].round().astype(np.int64)
    keep = (pred[:, 4] > conf) & _filter_classes(cls, classes)
    rows = pred[keep][:max_det]
    return Decoded(rows[:, :4].copy(), rows[:, 4].copy(), cls[keep][:max_det], rows[:, 6:])


def resolve_classes(
    classes: Sequence[int | str] | None, names: Mapping[int, str]
) -> np.ndarray | None:
    """Class filter ids from ids and/or names; ModelError names an unknown one.

    >>> resolve_classes(["car", 0], {0: "person", 2: "car"})
    array([2, 0])
    """
    if classes is None:
        return None
    by_name = {v: k for k, v in names.items()}
    ids: list[int] = []
    for c in classes:
        if isinstance(c, str) and not c.lstrip("-").isdigit():
            if c not in by_name:
                raise ModelError(
                    f"detector.classes: unknown class name {c!r}; the model's classes are "
                    f"{sorted(by_name, key=by_name.__getitem__)}"
                )
            ids.append(by_name[c])
        else:
            cid = int(c)
            if names and cid not in names:
                raise ModelError(f"detector.classes: class id {cid} not in 0..{max(names)}")
            ids.append(cid)
    return np.asarray(ids, dtype=np.int64)


def keypoints_to_source(
    flat: np.ndarray,
    kpt_shape: tuple[int, int],
    ratio: float,
    pad: tuple[int, int],
    shape: tuple[int, int],
) -> np.ndarray:
    """``(N, K*d)`` keypoints in input pixels -> ``(N, K, 3)`` float32 x, y in
    source pixels (clipped) and visibility (1.0 when d == 2)."""
    k, d = kpt_shape
    kp = np.asarray(flat, dtype=np.float32).reshape(-1, k, d)
    out = np.ones((len(kp), k, 3), dtype=np.float32)
    out[..., :2] = scale_coords(kp[..., :2], ratio, pad, shape)
    if d == 3:
        out[..., 2] = kp[..., 2]
    return out


# --------------------------------------------------------------------------- detector


@dataclass(frozen=True)
class Prepared:
    """A preprocessed batch: ``blob`` (n, 3, H, W) RGB in [0, 1] of the
    session's input dtype; per image its source ``shapes`` (h, w), letterbox
    ``ratios`` and ``pads`` (left, top) in input pixels."""

    blob: np.ndarray
    shapes: tuple[tuple[int, int], ...]
    ratios: tuple[float, ...]
    pads: tuple[tuple[int, int], ...]

    def __len__(self) -> int:
        return len(self.shapes)


@dataclass(frozen=True)
class _Layout:
    """How the session's outputs are laid out (resolved once at load)."""

    task: Task
    end2end: bool
    det_index: int
    #: the prototype output, when the model has one (used only for task segment)
    proto_index: int | None
    #: keypoint layout, config else metadata (used only for task pose)
    kpt_shape: tuple[int, int] | None


def _imgsz(value: int | tuple[int, int] | Sequence[int] | None) -> tuple[int, int] | None:
    if value is None:
        return None
    if isinstance(value, int):
        return (value, value)
    h, w = value
    return (int(h), int(w))


class YoloDetector:
    """An Ultralytics YOLO ONNX model: detect, segment or pose, raw or end-to-end.

    Built from a :class:`~edgewatch.config.DetectorConfig`; nothing is read
    until :meth:`load`. Metadata in the ONNX file (task, names, imgsz, stride,
    kpt_shape, end2end) is used unless the config overrides it (task, names,
    imgsz, kpt_shape).

    ``preprocess`` is not re-entrant (one scratch canvas per detector); the
    :class:`Prepared` it returns owns its blob and may be kept.
    """

    def __init__(self, cfg: DetectorConfig, metrics: Metrics | None = None) -> None:
        self.cfg = cfg
        self.metrics = metrics if metrics is not None else Metrics()
        self._session: Any = None
        self._info: ew_onnx.ModelInfo | None = None
        self._layout: _Layout | None = None
        self._names: dict[int, str] = {}
        self._imgsz: tuple[int, int] = (640, 640)
        self._max_batch = 1
        self._static_batch: int | None = None
        self._dtype: np.dtype[Any] = np.dtype(np.float32)
        self._classes: np.ndarray | None = None
        self._canvas: np.ndarray | None = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ load

    def load(self) -> None:
        """Open the session, resolve task/names/imgsz/batch, warm up once."""
        cfg = self.cfg
        half = bool(cfg.half)
        if cfg.half is None and cfg.device.startswith("tensorrt"):
            half = ew_onnx.read_model_info(cfg.model).half  # engine precision from metadata
        self._session = ew_onnx.create_session(
            cfg.model,
            cfg.device,
            metrics=self.metrics,
            stage="detector",
            intra_op_num_threads=cfg.intra_op_num_threads,
            half=half,
            trt_cache_dir=cfg.trt_cache_dir,
        )
        info = ew_onnx.session_model_info(self._session, cfg.model)
        self._info = info
        self._dtype = ew_onnx.session_input_dtype(self._session)
        self._names = self._resolve_names(info)
        self._imgsz = self._resolve_imgsz(info)
        self._layout = self._resolve_layout(info)
        self._static_batch = info.batch
        self._max_batch = cfg.batch if info.batch is None else info.batch
        if info.batch is not None and cfg.batch != 1 and info.batch != cfg.batch:
            logger.warning(
                "detector %s: the model has a static batch of %d; detector.batch %d is not used"
                " (export with dynamic=True to batch freely)",
                cfg.model,
                info.batch,
                cfg.batch,
            )
        self._classes = resolve_classes(cfg.classes, self._names)
        self._canvas = np.full((*self._imgsz, 3), PAD_VALUE, dtype=np.uint8)
        if cfg.warmup:
            h, w = self._imgsz
            self._run(np.zeros((self._max_batch, 3, h, w), dtype=self._dtype))
        logger.info(
            "detector %s: task=%s end2end=%s imgsz=%s batch=%s classes=%d input=%s",
            cfg.model,
            self.task.value,
            self._layout.end2end,
            self._imgsz,
            self._max_batch,
            len(self._names),
            self._dtype.name,
        )

    def _resolve_names(self, info: ew_onnx.ModelInfo) -> dict[int, str]:
        if self.cfg.names is not None:
            return ew_onnx.parse_names(self.cfg.names, self.cfg.model)
        if not info.names:
            raise ModelError(
                f"{self.cfg.model}: the model has no class names in its metadata; "
                "set detector.names in the config"
            )
        return dict(info.names)

    def _resolve_imgsz(self, info: ew_onnx.ModelInfo) -> tuple[int, int]:
        shape = info.inputs[0].shape if info.inputs else ()
        fixed = None
        if len(shape) == 4 and isinstance(shape[2], int) and isinstance(shape[3], int):
            fixed = (shape[2], shape[3])
        want = _imgsz(self.cfg.imgsz)
        if fixed is not None:
            if want is not None and want != fixed:
                raise ModelError(
                    f"{self.cfg.model}: detector.imgsz {list(want)} but the model's input is fixed "
                    f"at {list(fixed)}; re-export with dynamic=True or drop imgsz"
                )
            return fixed
        size = want or info.imgsz or (640, 640)
        s = max(info.stride, 1)
        rounded = (-(-size[0] // s) * s, -(-size[1] // s) * s)
        if rounded != size:
            logger.warning(
                "detector.imgsz %s is not a multiple of stride %d; using %s",
                list(size),
                s,
                list(rounded),
            )
        return rounded

    def _resolve_layout(self, info: ew_onnx.ModelInfo) -> _Layout:
        outs = info.outputs
        det = next((i for i, o in enumerate(outs) if len(o.shape) == 3), None)
        proto = next((i for i, o in enumerate(outs) if len(o.shape) == 4), None)
        if det is None:
            raise ModelError(
                f"{self.cfg.model}: no (B, C, N) output; not a YOLO detect/segment/pose model"
            )
        task_name = (self.cfg.task.value if self.cfg.task else None) or info.task or "detect"
        try:
            task = Task(task_name)
        except ValueError:
            raise ModelError(
                f"{self.cfg.model}: task {task_name!r} is not supported (detect, segment, pose)"
            ) from None
        if task is Task.SEGMENT and proto is None:
            raise ModelError(
                f"{self.cfg.model}: task segment needs a prototype output (B, 32, mh, mw)"
            )
        kpt = self.cfg.kpt_shape or info.kpt_shape
        if task is Task.POSE and kpt is None:
            raise ModelError(
                f"{self.cfg.model}: task pose needs the keypoint layout, and the model metadata "
                "has no 'kpt_shape': set detector.kpt_shape: [K, D] in the config "
                "(e.g. [17, 3] for COCO keypoints x, y, visibility)"
            )
        # Extra rows after the class scores, whatever the task asked for: a
        # segment or pose model run as plain detect still carries them.
        nm = outs[proto].shape[1] if proto is not None else 0
        extra: int | None = nm if isinstance(nm, int) else None  # None: symbolic dim
        if kpt is not None and extra is not None:
            extra += kpt[0] * kpt[1]
        end2end = info.end2end
        if "end2end" not in info.metadata and "nms" not in info.args:
            end2end = _looks_end2end(outs[det].shape, extra or 0)
        if not end2end:
            self._check_nc(outs[det].shape, extra)
        return _Layout(task, end2end, det, proto, kpt)

    def _check_nc(self, shape: tuple[ew_onnx.Dim, ...], extra: int | None) -> None:
        channels = shape[1]
        if not isinstance(channels, int) or not isinstance(extra, int):
            return
        nc = channels - 4 - extra
        if nc < 1 or nc != max(self._names) + 1:
            raise ModelError(
                f"{self.cfg.model}: output has {channels} channels = 4 box + {nc} classes + "
                f"{extra} extra, but {len(self._names)} class names are known"
            )

    # ------------------------------------------------------------------ properties

    @property
    def names(self) -> dict[int, str]:
        """Class id -> name (config override, else model metadata)."""
        return dict(self._names)

    @property
    def task(self) -> Task:
        """detect, segment or pose."""
        return self._loaded().task

    @property
    def imgsz(self) -> tuple[int, int]:
        """Network input ``(h, w)`` in pixels."""
        return self._imgsz

    @property
    def max_batch(self) -> int:
        """Frames one inference call takes: a static batch B > 1 is B (short
        batches are padded); a dynamic batch is ``cfg.batch``; otherwise 1."""
        return self._max_batch

    @property
    def info(self) -> ew_onnx.ModelInfo:
        """What the ONNX file says about itself (after :meth:`load`)."""
        if self._info is None:
            raise ModelError("detector not loaded: call load() first")
        return self._info

    @property
    def providers(self) -> list[str]:
        """Execution providers the session actually uses, best first."""
        self._loaded()
        return list(self._session.get_providers())

    def _loaded(self) -> _Layout:
        if self._layout is None:
            raise ModelError("detector not loaded: call load() first")
        return self._layout

    # ------------------------------------------------------------------ stages

    def preprocess(self, images: Sequence[np.ndarray]) -> Prepared:
        """Letterbox BGR uint8 HxWx3 frames to an RGB NCHW blob in [0, 1]."""
        self._loaded()
        h, w = self._imgsz
        blob = np.empty((len(images), 3, h, w), dtype=self._dtype)
        shapes, ratios, pads = [], [], []
        scale = np.float32(1.0 / 255.0)
        with self._lock:
            canvas = self._canvas
            assert canvas is not None
            for i, img in enumerate(images):
                if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
                    raise ModelError(
                        f"expected HxWx3 uint8 BGR frames, got {img.shape} {img.dtype}"
                    )
                r, (nw, nh), (top, _, left, _) = letterbox_params(img.shape[:2], (h, w))
                canvas.fill(PAD_VALUE)
                roi = canvas[top : top + nh, left : left + nw]
                if (nw, nh) == (img.shape[1], img.shape[0]):
                    roi[...] = img
                else:
                    out = cv2.resize(img, (nw, nh), dst=roi, interpolation=cv2.INTER_LINEAR)
                    if not np.shares_memory(out, roi):  # cv2 could not write in place
                        roi[...] = out
                np.multiply(canvas.transpose(2, 0, 1)[::-1], scale, out=blob[i], casting="unsafe")
                shapes.append((int(img.shape[0]), int(img.shape[1])))
                ratios.append(r)
                pads.append((left, top))
        return Prepared(blob, tuple(shapes), tuple(ratios), tuple(pads))

    def _run(self, blob: np.ndarray) -> list[np.ndarray]:
        name = self._session.get_inputs()[0].name
        try:
            return list(self._session.run(None, {name: blob}))
        except ew_onnx.ORT_ERRORS as e:
            raise ModelError(f"{self.cfg.model}: inference failed on {blob.shape}: {e}") from e

    def infer(self, prepared: Prepared) -> list[np.ndarray]:
        """Run the network; returns the session outputs for ``len(prepared)``
        images (calls of ``max_batch`` frames; a static batch is zero-padded).

        Each call is counted in ``edgewatch_inference_calls_total{stage="detector"}``
        (the warm-up is not)."""
        self._loaded()
        n = len(prepared)
        if n == 0:
            return []
        step = self._max_batch
        chunks: list[list[np.ndarray]] = []
        for s in range(0, n, step):
            part = prepared.blob[s : s + step]
            real = len(part)
            if self._static_batch is not None and real < self._static_batch:
                fill = np.zeros((self._static_batch - real, *part.shape[1:]), dtype=part.dtype)
                part = np.concatenate([part, fill])
            chunks.append([o[:real] for o in self._run(np.ascontiguousarray(part))])
            self.metrics.inc("edgewatch_inference_calls_total", stage="detector")
        if len(chunks) == 1:
            return chunks[0]
        return [np.concatenate(outs) for outs in zip(*chunks, strict=True)]

    def postprocess(self, outputs: Sequence[np.ndarray], prepared: Prepared) -> list[sv.Detections]:
        """Decode, NMS and map to source pixels; one Detections per image."""
        lay = self._loaded()
        return [self._decode_one(outputs, prepared, i, lay) for i in range(len(prepared))]

    def _decode_one(
        self, outputs: Sequence[np.ndarray], prepared: Prepared, i: int, lay: _Layout
    ) -> sv.Detections:
        cfg = self.cfg
        pred = outputs[lay.det_index][i]
        shape, ratio, pad = prepared.shapes[i], prepared.ratios[i], prepared.pads[i]
        protos = outputs[lay.proto_index][i] if lay.proto_index is not None else None
        nm = protos.shape[0] if protos is not None else 0
        kd = lay.kpt_shape[0] * lay.kpt_shape[1] if lay.kpt_shape else 0
        if lay.end2end:  # x1, y1, x2, y2, score, class, then the extra columns
            nm = nm if lay.task is Task.SEGMENT else 0
        if lay.end2end:
            dec = decode_end2end(pred, cfg.conf, classes=self._classes, max_det=cfg.max_det)
        else:
            nc = pred.shape[0] - 4 - nm - kd
            dec = decode_raw(
                pred,
                nc,
                cfg.conf,
                cfg.iou,
                classes=self._classes,
                agnostic=cfg.agnostic_nms,
                max_det=cfg.max_det,
            )
        boxes = scale_boxes(dec.boxes, ratio, pad, shape)
        data: dict[str, Any] = {}
        mask = None
        if lay.task is Task.SEGMENT and protos is not None:
            mask = protos_to_masks(protos, dec.extra[:, :nm], boxes, shape)
        if lay.task is Task.POSE and lay.kpt_shape is not None:
            data[DATA_KEYPOINTS] = keypoints_to_source(
                dec.extra[:, nm : nm + kd], lay.kpt_shape, ratio, pad, shape
            )
        return sv.Detections(
            xyxy=boxes.astype(np.float32, copy=False),
            confidence=dec.scores.astype(np.float32, copy=False),
            class_id=dec.class_ids.astype(int),
            mask=mask,
            data=data,
        )

    def predict(self, images: Sequence[np.ndarray]) -> list[sv.Detections]:
        """``postprocess(infer(preprocess(images)))``: one Detections per image."""
        prepared = self.preprocess(images)
        return self.postprocess(self.infer(prepared), prepared)


def _looks_end2end(shape: tuple[ew_onnx.Dim, ...], extra: int) -> bool:
    """Guess an NMS-free ``(B, max_det, 6 + extra)`` layout for models without
    metadata: the last dim is exactly ``6 + extra`` and smaller than the middle."""
    a, c = shape[1], shape[2]
    return isinstance(c, int) and c == 6 + extra and (not isinstance(a, int) or a > c)
