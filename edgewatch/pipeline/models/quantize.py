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


def _read_video(path: Path, wanted: set[int] | None, limit: int) -> Iterator[tuple[int, Any]]:
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


class _FrameReader:
    """A ``CalibrationDataReader``: one ``{input: blob}`` per static batch of frames.

    ``set_range`` / ``__len__`` let onnxruntime calibrate in strides
    (``CalibStridedMinMax``) so only one stride of activations is held at once.
    """

    def __init__(self, input_name: str, blobs: Sequence[np.ndarray], batch: int) -> None:
        pad = (-len(blobs)) % batch
        full = list(blobs) + [blobs[-1]] * pad
        self._feeds = [
            {input_name: np.concatenate(full[i : i + batch]).astype(np.float32)}
            for i in range(0, len(full), batch)
        ]
        self._pos, self._end = 0, len(self._feeds)

    def __len__(self) -> int:
        return len(self._feeds)

    def set_range(self, start_index: int, end_index: int) -> None:
        self._pos, self._end = start_index, min(end_index, len(self._feeds))

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._pos >= self._end:
            return None
        self._pos += 1
        return self._feeds[self._pos - 1]

    def rewind(self) -> None:
        self._pos = 0


def calibration_stride(n: int, limit: int = 8) -> int:
    """Largest divisor of ``n`` that is <= ``limit`` (onnxruntime needs one).

    >>> [calibration_stride(n) for n in (1, 7, 12, 13, 64)]
    [1, 7, 6, 1, 8]
    """
    return max(d for d in range(1, min(n, limit) + 1) if n % d == 0)


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
    (``session.run``; mean over the held-out frames, the two models taking
    turns on each frame, after one warm-up each)."""

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

    det = YoloDetector(
        DetectorConfig.model_validate(
            {"model": model, "device": "cpu", "conf": conf, "iou": iou, "names": names}
        )
    )
    det.load()
    return det


def _fallback_names(info: ModelInfo) -> list[str] | None:
    """Numbered class names for a detect model whose metadata has none."""
    if info.names or not info.outputs or len(info.outputs[0].shape) != 3:
        return None
    channels = info.outputs[0].shape[1]
    return [str(i) for i in range(channels - 4)] if isinstance(channels, int) else None


def _run_interleaved(
    dets: Sequence[Any], frames: Sequence[np.ndarray]
) -> tuple[list[list[Any]], list[float]]:
    """Detections per frame of each detector and its mean inference ms per frame.

    The detectors take turns on every frame (after one warm-up call each), so
    a load change on the machine affects them alike and the ratio stays fair.
    """
    for det in dets:
        det.infer(det.preprocess([frames[0]]))
    out: list[list[Any]] = [[] for _ in dets]
    times: list[list[float]] = [[] for _ in dets]
    for frame in frames:
        for k, det in enumerate(dets):
            prepared = det.preprocess([frame])
            t0 = time.perf_counter()
            outs = det.infer(prepared)
            times[k].append((time.perf_counter() - t0) * 1000.0)
            out[k] += det.postprocess(outs, prepared)
    return out, [float(np.mean(t)) for t in times]


def _prepare_graph(src: Path, work: Path, pre: bool) -> tuple[Path, list[str]]:
    """Optionally run ORT's quantization pre-processing, name nodes, find the head."""
    import onnx

    path = src
    if pre:
        from onnxruntime.quantization.shape_inference import quant_pre_process

        try:
            quant_pre_process(str(src), str(work / "pre.onnx"))
            path = work / "pre.onnx"
        except Exception as e:  # ORT raises many unrelated types; pre-processing is optional
            log.warning("quantization pre-processing failed (%s); quantizing the graph as is", e)
    model = onnx.load(str(path))
    name_nodes(model)
    excluded = head_float_nodes(model)
    if not excluded:
        log.warning(
            "%s: no post-processing found after the last convolutions; the outputs "
            "will be quantized too",
            src,
        )
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
        str(graph),
        str(out),
        reader,
        quant_format=QuantFormat.QDQ,
        per_channel=per_channel,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        nodes_to_exclude=excluded,
        calibrate_method=calib,
        extra_options={"CalibStridedMinMax": calibration_stride(len(reader))},
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
    keep_head_float: bool = True,
) -> QuantizeReport:
    """Write a static INT8 QDQ copy of ``model`` calibrated on ``source``.

    ``frames`` calibration frames and ``eval_frames`` different held-out frames
    are spread over ``source`` (video file or image folder). ``out`` defaults to
    ``<model stem>_int8.onnx`` beside the model. An fp16 model is converted to
    fp32 first (and compared as fp32). ``keep_head_float=False`` quantizes the
    head too (only to demonstrate the pitfall in the module docstring). Raises
    ModelError, removing ``out``, when the INT8 model detects nothing on
    held-out frames where the float model does.
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
    dst.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="edgewatch-quant-") as tmp:
        work = Path(tmp)
        float_path, was_fp16 = src, _has_fp16(onnx.load(str(src), load_external_data=False))
        if was_fp16:
            float_path = work / "fp32.onnx"
            convert_to_fp32(src, float_path)
        ref = _detector(float_path, conf, iou, names)
        graph, excluded = _prepare_graph(float_path, work, preprocess_graph)
        excluded = excluded if keep_head_float else []
        log.info(
            "quantizing %s: %d calibration frames, %d nodes kept float",
            src,
            len(sample.calib),
            len(excluded),
        )
        _calibrate(graph, dst, ref, sample.calib, excluded, method, per_channel)
    original = onnx.load(str(src), load_external_data=False)
    extra = {"quantization": f"int8 static QDQ ({method}, {len(sample.calib)} frames "
                             f"of {Path(source).name})"}
    old_args = next((p.value for p in original.metadata_props if p.key == "args"), None)
    if (args := _args_with(old_args, int8=True, half=False)) is not None:
        extra["args"] = args
    q = onnx.load(str(dst))
    _copy_metadata(original, q, extra)
    onnx.save(q, str(dst))
    report = _evaluate(src, dst, ref, sample, excluded, conf, iou, names, was_fp16)
    return report


def _evaluate(
    src: Path, dst: Path, ref: Any, sample: FrameSample, excluded: list[str], conf: float,
    iou: float, names: list[str] | None, was_fp16: bool,
) -> QuantizeReport:
    test = _detector(dst, conf, iou, names)
    ref_dets: list[Any] = []
    test_dets: list[Any] = []
    ref_ms = test_ms = 0.0
    if sample.eval:
        (ref_dets, test_dets), (ref_ms, test_ms) = _run_interleaved([ref, test], sample.eval)
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


@dataclass(frozen=True)
class Fp32Report:
    """What :func:`convert_to_fp32` changed: tensors converted (initializers,
    constants, graph inputs/outputs/value infos), Cast nodes retargeted to
    float32, and Cast nodes removed because they became float32 -> float32."""

    output: Path
    tensors: int
    casts_retargeted: int
    casts_removed: int


def _graphs(graph: Any) -> Iterator[Any]:
    """``graph`` and every subgraph (If/Loop/Scan bodies), depth first."""
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                yield from _graphs(sub)


def _has_fp16(model: Any) -> bool:
    from onnx import TensorProto

    g = model.graph
    return any(t.data_type == TensorProto.FLOAT16 for t in g.initializer) or any(
        v.type.tensor_type.elem_type == TensorProto.FLOAT16 for v in (*g.input, *g.output)
    )


def _tensor_to_fp32(t: Any) -> bool:
    from onnx import TensorProto, numpy_helper

    if t.data_type != TensorProto.FLOAT16:
        return False
    t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t).astype(np.float32), t.name))
    return True


def _retype(graph: Any) -> tuple[int, int]:
    """Turn every float16 tensor, type and Cast target of ``graph`` into float32."""
    from onnx import TensorProto

    tensors = casts = 0
    tensors += sum(_tensor_to_fp32(t) for t in graph.initializer)
    for v in (*graph.input, *graph.output, *graph.value_info):
        if v.type.tensor_type.elem_type == TensorProto.FLOAT16:
            v.type.tensor_type.elem_type = TensorProto.FLOAT
            tensors += 1
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                tensors += _tensor_to_fp32(attr.t)
            if attr.name in ("to", "dtype") and attr.i == TensorProto.FLOAT16:
                attr.i = TensorProto.FLOAT
                casts += node.op_type == "Cast"
    return tensors, casts


def _drop_identity_casts(model: Any) -> int:
    """Bypass Cast(to=float) nodes whose input is already float32 (top graph)."""
    import onnx
    from onnx import TensorProto

    graph = model.graph
    inferred = onnx.shape_inference.infer_shapes(model).graph
    types = {
        v.name: v.type.tensor_type.elem_type
        for v in (*inferred.input, *inferred.value_info, *inferred.output)
    }
    types |= {t.name: t.data_type for t in graph.initializer}
    outputs = {o.name for o in graph.output}
    rename: dict[str, str] = {}
    kept = []
    for node in graph.node:
        node.input[:] = [rename.get(i, i) for i in node.input]
        to = next((a.i for a in node.attribute if a.name == "to"), None)
        if (
            node.op_type == "Cast"
            and to == TensorProto.FLOAT
            and node.output[0] not in outputs
            and types.get(node.input[0]) == TensorProto.FLOAT
        ):
            rename[node.output[0]] = node.input[0]
            continue
        kept.append(node)
    for sub in _graphs(graph):
        if sub is graph:
            continue
        for node in sub.node:
            node.input[:] = [rename.get(i, i) for i in node.input]
    del graph.node[:]
    graph.node.extend(kept)
    return len(rename)


def convert_to_fp32(model: str | Path, out: str | Path) -> Fp32Report:
    """Write an fp32 copy of an fp16 ONNX model (weights, I/O and casts).

    Metadata is carried over, with ``half`` set to False in Ultralytics
    ``args``. A model without float16 tensors is written unchanged (counts 0).
    """
    import onnx

    src, dst = Path(model), Path(out)
    read_model_info(src)  # a clear ModelError for a missing or non-ONNX file
    if dst.resolve() == src.resolve():
        raise ModelError(f"output {dst} would overwrite the input model")
    m = onnx.load(str(src))
    tensors = casts = 0
    for g in _graphs(m.graph):
        t, c = _retype(g)
        tensors, casts = tensors + t, casts + c
    removed = _drop_identity_casts(m) if tensors or casts else 0
    meta = {p.key: p.value for p in m.metadata_props}
    if tensors and (args := _args_with(meta.get("args"), half=False)) is not None:
        _copy_metadata(m, m, {"args": args})
    try:
        onnx.checker.check_model(m)
    except onnx.checker.ValidationError as e:
        raise ModelError(f"{src}: the fp32 graph does not validate: {e}") from e
    onnx.save(m, str(dst))
    return Fp32Report(dst, tensors, casts, removed)
