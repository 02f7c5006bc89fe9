"""Static INT8 (QDQ) quantization of Ultralytics YOLO ONNX models, and fp16 -> fp32.

:func:`quantize_yolo` calibrates on the user's own footage (a video file or a
folder of images, letterboxed exactly as the detector does), keeps the
detection head's post-processing in float (:func:`head_float_nodes`), copies
the Ultralytics ``metadata_props``, then compares the INT8 model with the
original on *held-out* frames (never used for calibration): inference ms per
frame of each, and how many detections agree (:func:`match_detections`, same
class and IoU >= 0.5).

Why the head stays in float: the last ``Concat`` of a YOLOv8/11 head joins box
coordinates (0..640 input pixels) and class scores (0..1) in one tensor, so one
INT8 scale (~2.5 px per step) rounds every score to 0 and nothing is detected.
Everything from the head's last convolutions to the graph outputs (DFL,
dist2bbox, ``Sigmoid``, ``Concat``, ``Mul`` by strides) is excluded.

:func:`convert_to_fp32` turns an fp16 export into an fp32 graph for CPUs, where
fp16 only adds casts.
"""

from __future__ import annotations

import ast
import logging
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edgewatch.errors import ModelError, SourceError
from edgewatch.pipeline.models.onnx import ModelInfo, read_model_info
from edgewatch.pipeline.models.yolo import letterbox

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})
#: Ops whose outputs are the head's learned maps: the backwards walk stops there.
_HEAD_STOP_OPS = frozenset({"Conv", "ConvTranspose", "MatMul", "Gemm"})
#: Ops whose inputs only matter through their shape: the walk does not pass them.
_SHAPE_OPS = frozenset({"Shape", "Size"})


# --------------------------------------------------------------------------- frames


@dataclass(frozen=True)
class FrameSample:
    """Frames read for calibration and evaluation (BGR uint8, source size).

    ``calib_indices`` / ``eval_indices`` are frame numbers in the video (or
    positions in the sorted image list); the two sets are disjoint.
    """

    calib: tuple[np.ndarray, ...]
    calib_indices: tuple[int, ...]
    eval: tuple[np.ndarray, ...]
    eval_indices: tuple[int, ...]


def split_positions(n: int, n_eval: int) -> tuple[list[int], list[int]]:
    """Split positions ``0..n-1`` into (calibration, evaluation), the
    ``n_eval`` evaluation positions spread evenly between calibration ones.

    >>> split_positions(6, 2)
    ([0, 2, 3, 5], [1, 4])
    """
    if not 0 <= n_eval <= n:
        raise ValueError(f"cannot hold out {n_eval} of {n} frames")
    ev = sorted({int((j + 0.5) * n / n_eval) for j in range(n_eval)}) if n_eval else []
    evs = set(ev)
    return [p for p in range(n) if p not in evs], ev


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def _read_video(path: Path, wanted: set[int] | None, limit: int) -> Iterator[tuple[int, np.ndarray]]:
    """Frames of ``path`` whose index is in ``wanted`` (all, up to ``limit``, if None)."""
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise SourceError(f"cannot open video {path}")
    try:
        index = 0
        last = max(wanted) if wanted else limit - 1
        while index <= last and cap.grab():
            if wanted is None or index in wanted:
                ok, frame = cap.retrieve()
                if not ok:
                    raise SourceError(f"{path}: cannot decode frame {index}")
                yield index, frame
            index += 1
    finally:
        cap.release()


def _video_frame_count(path: Path) -> int:
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise SourceError(f"cannot open video {path}")
        return max(int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), 0)
    finally:
        cap.release()


def sample_frames(source: str | Path, n_calib: int, n_eval: int) -> FrameSample:
    """Read ``n_calib + n_eval`` frames spread over a video or an image folder.

    Frames are taken at evenly spaced indices over the whole source, then split
    by :func:`split_positions`. A source with too few frames is a SourceError.
    """
    src = Path(source)
    n = n_calib + n_eval
    if n_calib < 1:
        raise ValueError("need at least one calibration frame")
    if src.is_dir():
        files = _image_files(src)
        total = len(files)
    elif src.is_file():
        files, total = [], _video_frame_count(src)
    else:
        raise SourceError(f"calibration source not found: {src}")
    if 0 < total < n or (src.is_dir() and total < n):
        raise SourceError(f"{src}: has {total} frames, need {n} ({n_calib} calibration + "
                          f"{n_eval} held out); lower --frames or --eval-frames")
    picks = [int(i) for i in np.linspace(0, total - 1, n).round()] if total else list(range(n))
    if src.is_dir():
        frames = []
        for i in picks:
            img = cv2.imread(str(files[i]), cv2.IMREAD_COLOR)
            if img is None:
                raise SourceError(f"cannot read image {files[i]}")
            frames.append((i, img))
    else:
        got = dict(_read_video(src, set(picks) if total else None, n))
        if len(got) < len(set(picks)):
            raise SourceError(f"{src}: decoded only {len(got)} of the {n} frames needed")
        frames = [(i, got[i]) for i in picks]
    cal, ev = split_positions(len(frames), n_eval)
    return FrameSample(
        calib=tuple(frames[p][1] for p in cal), calib_indices=tuple(frames[p][0] for p in cal),
        eval=tuple(frames[p][1] for p in ev), eval_indices=tuple(frames[p][0] for p in ev),
    )


def preprocess(frame: np.ndarray, imgsz: tuple[int, int], dtype: Any = np.float32) -> np.ndarray:
    """One BGR frame -> ``(1, 3, h, w)`` RGB blob in [0, 1], letterboxed to ``imgsz``."""
    img, _, _ = letterbox(frame, imgsz)
    return np.ascontiguousarray(img[:, :, ::-1].transpose(2, 0, 1)[None], dtype=dtype) / 255.0


class _FrameReader:
    """A ``CalibrationDataReader``: one ``{input: blob}`` per static batch of frames."""

    def __init__(self, input_name: str, blobs: Sequence[np.ndarray], batch: int) -> None:
        stacked = [np.concatenate(list(blobs[i : i + batch]) + [blobs[-1]] * max(
            0, i + batch - len(blobs))) for i in range(0, len(blobs), batch)]
        self._feeds = iter([{input_name: b.astype(np.float32)} for b in stacked])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)

    def rewind(self) -> None:  # onnxruntime calls it between calibration passes
        return None


# --------------------------------------------------------------------------- graph


def head_float_nodes(model: Any) -> list[str]:
    """Names of the nodes between the head's last learned layers and the outputs.

    Walks back from every graph output and stops at Conv/ConvTranspose/MatMul/
    Gemm nodes, except the DFL convolution (a Conv fed by Softmax), which is
    part of the box decoding; Shape/Size inputs are not followed. Returned in
    graph order; unnamed nodes must have been named first (:func:`name_nodes`).
    """
    graph = model.graph
    producer = {out: node for node in graph.node for out in node.output}
    stack = [o.name for o in graph.output]
    seen: set[str] = set()
    keep: set[int] = set()
    while stack:
        tensor = stack.pop()
        if tensor in seen:
            continue
        seen.add(tensor)
        node = producer.get(tensor)
        if node is None:
            continue
        src = producer.get(node.input[0]) if node.input else None
        if node.op_type in _HEAD_STOP_OPS and not (src is not None and src.op_type == "Softmax"):
            continue
        keep.add(id(node))
        if node.op_type not in _SHAPE_OPS:
            stack.extend(i for i in node.input if i)
    return [n.name for n in graph.node if id(n) in keep]


def name_nodes(model: Any) -> int:
    """Give every unnamed node a unique name (``<op>_<index>``); returns how many."""
    used = {n.name for n in model.graph.node if n.name}
    count = 0
    for i, node in enumerate(model.graph.node):
        if not node.name:
            name = f"{node.op_type}_{i}"
            while name in used:
                name += "_"
            node.name = name
            used.add(name)
            count += 1
    return count


def _copy_metadata(src: Any, dst: Any, extra: dict[str, str]) -> None:
    """Replace ``dst.metadata_props`` by ``src``'s plus ``extra`` (extra wins)."""
    meta = {p.key: p.value for p in src.metadata_props} | extra
    del dst.metadata_props[:]
    for key, value in meta.items():
        prop = dst.metadata_props.add()
        prop.key, prop.value = key, value


def _args_with(meta_args: str | None, **changes: Any) -> str | None:
    """The Ultralytics ``args`` metadata string with keys changed (None if absent)."""
    if meta_args is None:
        return None
    try:
        args = ast.literal_eval(meta_args)
    except (ValueError, SyntaxError) as e:
        raise ModelError(f"metadata 'args' is not a Python literal: {meta_args[:80]!r}") from e
    if not isinstance(args, dict):
        return meta_args
    return repr(args | changes)


# --------------------------------------------------------------------------- agreement


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(N, M)`` IoU of xyxy boxes ``a`` (N, 4) and ``b`` (M, 4); 0 where a union is 0.

    >>> box_iou(np.array([[0, 0, 2, 2]], float), np.array([[1, 0, 3, 2]], float)).round(4)
    array([[0.3333]])
    """
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def match_detections(
    ref_boxes: np.ndarray, ref_cls: np.ndarray, test_boxes: np.ndarray, test_cls: np.ndarray,
    test_conf: np.ndarray, iou: float = 0.5,
) -> list[tuple[int, int, float]]:
    """Greedy one-to-one matches ``(test index, ref index, IoU)`` of one image.

    Test boxes are taken by descending confidence; each takes the unmatched
    reference box of the same class with the highest IoU, if that IoU is >= ``iou``
    (the VOC/COCO true-positive rule). Boxes are xyxy in the same pixels.
    """
    ious = box_iou(test_boxes, ref_boxes)
    same = np.asarray(test_cls)[:, None] == np.asarray(ref_cls)[None, :]
    ious = np.where(same, ious, -1.0)
    taken: set[int] = set()
    matches = []
    for t in np.argsort(-np.asarray(test_conf, dtype=np.float64), kind="stable"):
        row = ious[t].copy()
        if taken:
            row[list(taken)] = -1.0
        if row.size == 0:
            continue
        r = int(row.argmax())
        if row[r] >= iou:
            taken.add(r)
            matches.append((int(t), r, float(row[r])))
    return matches


@dataclass(frozen=True)
class Agreement:
    """How the INT8 detections agree with the float model's on held-out frames.

    ``precision`` = matched / INT8 boxes and ``recall`` = matched / float boxes
    (the float model is the reference); both are 1.0 when there is nothing to
    match. ``mean_iou`` is over matched pairs (0.0 when none).
    """

    frames: int
    ref_boxes: int
    test_boxes: int
    matched: int
    mean_iou: float

    @property
    def precision(self) -> float:
        return self.matched / self.test_boxes if self.test_boxes else 1.0

    @property
    def recall(self) -> float:
        return self.matched / self.ref_boxes if self.ref_boxes else 1.0


def agreement(
    ref: Sequence[Any], test: Sequence[Any], iou: float = 0.5
) -> Agreement:
    """Pool :func:`match_detections` over images; ``ref`` / ``test`` are
    ``supervision.Detections`` (xyxy, class_id, confidence) per image."""
    if len(ref) != len(test):
        raise ValueError(f"{len(ref)} reference images but {len(test)} test images")
    n_ref = n_test = 0
    ious: list[float] = []
    for r, t in zip(ref, test, strict=True):
        n_ref += len(r)
        n_test += len(t)
        conf = t.confidence if t.confidence is not None else np.ones(len(t))
        ious += [m[2] for m in match_detections(r.xyxy, r.class_id, t.xyxy, t.class_id, conf, iou)]
    return Agreement(len(ref), n_ref, n_test, len(ious), float(np.mean(ious)) if ious else 0.0)


# --------------------------------------------------------------------------- quantize


@dataclass(frozen=True)
class QuantizeReport:
    """Result of :func:`quantize_yolo`. Times are inference-only ms per frame
    (``session.run``; mean over the held-out frames, after one warm-up)."""

    output: Path
    calib_indices: tuple[int, ...]
    eval_indices: tuple[int, ...]
    excluded_nodes: tuple[str, ...]
    float_ms: float
    int8_ms: float
    agreement: Agreement
    converted_from_fp16: bool

    @property
    def speedup(self) -> float:
        return self.float_ms / self.int8_ms if self.int8_ms > 0 else float("nan")


_METHODS = ("minmax", "entropy", "percentile")


def _detector(model: Path, conf: float, iou: float, names: list[str] | None) -> Any:
    from edgewatch.config import DetectorConfig
    from edgewatch.pipeline.models.yolo import YoloDetector

    det = YoloDetector(DetectorConfig(model=model, device="cpu", conf=conf, iou=iou, names=names))
    det.load()
    return det


def _fallback_names(info: ModelInfo) -> list[str] | None:
    """Numbered class names for a detect model whose metadata has none."""
    if info.names or not info.outputs or len(info.outputs[0].shape) != 3:
        return None
    channels = info.outputs[0].shape[1]
    return [str(i) for i in range(channels - 4)] if isinstance(channels, int) else None


def _run_timed(det: Any, frames: Sequence[np.ndarray]) -> tuple[list[Any], float]:
    """Detections per frame and mean inference ms per frame (one frame per call)."""
    dets, times = [], []
    det.infer(det.preprocess([frames[0]]))  # warm-up beyond load(): allocator, caches
    for frame in frames:
        prepared = det.preprocess([frame])
        t0 = time.perf_counter()
        outs = det.infer(prepared)
        times.append((time.perf_counter() - t0) * 1000.0)
        dets += det.postprocess(outs, prepared)
    return dets, float(np.mean(times))


def _prepare_graph(src: Path, work: Path, pre: bool) -> tuple[Path, list[str]]:
    """Optionally run ORT's quantization pre-processing, name nodes, find the head."""
    import onnx

    path = src
    if pre:
        from onnxruntime.quantization.shape_inference import quant_pre_process

        try:
            quant_pre_process(str(src), str(work / "pre.onnx"))
            path = work / "pre.onnx"
        except Exception as e:  # noqa: BLE001 - ORT raises many types; pre-processing is optional
            log.warning("quantization pre-processing failed (%s); quantizing the graph as is", e)
    model = onnx.load(str(path))
    name_nodes(model)
    excluded = head_float_nodes(model)
    if len(excluded) > len(model.graph.node) // 2:
        log.warning("%d of %d nodes stay float: the graph does not look like a YOLO head",
                    len(excluded), len(model.graph.node))
    onnx.save(model, str(work / "named.onnx"))
    return work / "named.onnx", excluded


def _calibrate(
    graph: Path, out: Path, det: Any, frames: Sequence[np.ndarray], excluded: list[str],
    method: str, per_channel: bool,
) -> None:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(_FrameReader, CalibrationDataReader):
        pass

    blobs = [det.preprocess([f]).blob for f in frames]
    batch = det.info.batch or 1
    reader = Reader(det.info.inputs[0].name, blobs, batch)
    calib = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
             "percentile": CalibrationMethod.Percentile}[method]
    quantize_static(
        str(graph), str(out), reader, quant_format=QuantFormat.QDQ, per_channel=per_channel,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
        nodes_to_exclude=excluded, calibrate_method=calib,
        extra_options={"CalibMaxIntermediateOutputs": 8},
    )


def quantize_yolo(
    model: str | Path,
    source: str | Path,
    out: str | Path | None = None,
    *,
    frames: int = 64,
    eval_frames: int = 16,
    method: str = "minmax",
    per_channel: bool = True,
    conf: float = 0.25,
    iou: float = 0.45,
    preprocess_graph: bool = True,
) -> QuantizeReport:
    """Write a static INT8 QDQ copy of ``model`` calibrated on ``source``.

    ``frames`` calibration frames and ``eval_frames`` different held-out frames
    are spread over ``source`` (video file or image folder). ``out`` defaults to
    ``<model stem>_int8.onnx`` beside the model. An fp16 model is converted to
    fp32 first (and compared as fp32). Raises ModelError, removing ``out``, when
    the INT8 model detects nothing on held-out frames where the float model does.
    """
    import onnx

    src = Path(model)
    info = read_model_info(src)
    if method not in _METHODS:
        raise ModelError(f"unknown calibration method {method!r}; choose one of {_METHODS}")
    dst = Path(out) if out is not None else src.with_name(f"{src.stem}_int8.onnx")
    if dst.resolve() == src.resolve():
        raise ModelError(f"output {dst} would overwrite the input model")
    sample = sample_frames(source, frames, eval_frames)
    names = _fallback_names(info)
    with tempfile.TemporaryDirectory(prefix="edgewatch-quant-") as tmp:
        work = Path(tmp)
        float_path, was_fp16 = src, _has_fp16(onnx.load(str(src), load_external_data=False))
        if was_fp16:
            float_path = work / "fp32.onnx"
            convert_to_fp32(src, float_path)
        ref = _detector(float_path, conf, iou, names)
        graph, excluded = _prepare_graph(float_path, work, preprocess_graph)
        log.info("quantizing %s: %d calibration frames, %d nodes kept float",
                 src, len(sample.calib), len(excluded))
        _calibrate(graph, dst, ref, sample.calib, excluded, method, per_channel)
    q = onnx.load(str(dst))
    meta = {p.key: p.value for p in onnx.load(str(src), load_external_data=False).metadata_props}
    extra = {"quantization": f"int8 static QDQ ({method}, {len(sample.calib)} frames "
                             f"of {Path(source).name})"}
    if (args := _args_with(meta.get("args"), int8=True, half=False)) is not None:
        extra["args"] = args
    _copy_metadata(onnx.load(str(src), load_external_data=False), q, extra)
    onnx.save(q, str(dst))
    report = _evaluate(src, dst, ref, sample, excluded, conf, iou, names, was_fp16)
    return report


def _evaluate(
    src: Path, dst: Path, ref: Any, sample: FrameSample, excluded: list[str], conf: float,
    iou: float, names: list[str] | None, was_fp16: bool,
) -> QuantizeReport:
    test = _detector(dst, conf, iou, names)
    ref_dets, ref_ms = _run_timed(ref, sample.eval) if sample.eval else ([], 0.0)
    test_dets, test_ms = _run_timed(test, sample.eval) if sample.eval else ([], 0.0)
    agree = agreement(ref_dets, test_dets, 0.5)
    if agree.ref_boxes and not agree.test_boxes:
        dst.unlink(missing_ok=True)
        raise ModelError(
            f"{src}: the INT8 model finds no detections on {agree.frames} held-out frames where "
            f"the float model finds {agree.ref_boxes}; the output head was probably quantized "
            f"({len(excluded)} nodes were kept float). {dst} was removed."
        )
    return QuantizeReport(dst, sample.calib_indices, sample.eval_indices, tuple(excluded),
                          ref_ms, test_ms, agree, was_fp16)


# --------------------------------------------------------------------------- fp16 -> fp32
