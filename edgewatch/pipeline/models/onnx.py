"""ONNX Runtime sessions, execution-provider selection and Ultralytics metadata.

Two public entry points:

- :func:`read_model_info` reads what an ONNX file says about itself (the
  ``metadata_props`` Ultralytics writes on export, plus the graph's inputs and
  outputs) through a CPU session without graph optimisation, so it needs only
  onnxruntime; ``edgewatch models info`` uses it (and :func:`read_opsets`, which
  needs the optional ``onnx`` package).
- :func:`create_session` builds an :class:`onnxruntime.InferenceSession` for a
  ``device`` string (``auto | cpu | cuda[:N] | tensorrt[:N] | openvino |
  coreml``). A provider this onnxruntime build lacks, or one that fails to
  initialise, falls back (TensorRT -> CUDA -> CPU, others -> CPU) with one logged
  warning saying why, and one increment of
  ``edgewatch_fallbacks_total{stage=..., reason=...}``.

Every failure is a :class:`~edgewatch.errors.ModelError` with the path in it.
"""

from __future__ import annotations

import ast
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import onnxruntime as ort
from onnxruntime.capi import onnxruntime_pybind11_state as _ort_state

from edgewatch.errors import ModelError
from edgewatch.metrics import Metrics

logger = logging.getLogger(__name__)

#: Errors onnxruntime raises while reading or initialising a model.
ORT_ERRORS: tuple[type[Exception], ...] = (
    _ort_state.Fail,
    _ort_state.InvalidArgument,
    _ort_state.InvalidGraph,
    _ort_state.InvalidProtobuf,
    _ort_state.NoSuchFile,
    _ort_state.NotImplemented,
    _ort_state.RuntimeException,
    RuntimeError,
)

#: Public alias: what callers catching session-run errors should catch.

_DEVICE_RE = re.compile(r"^(auto|cpu|cuda|tensorrt|openvino|coreml)(?::(\d+))?$")

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
TENSORRT = "TensorrtExecutionProvider"
OPENVINO = "OpenVINOExecutionProvider"
COREML = "CoreMLExecutionProvider"

#: ORT tensor type strings -> numpy dtype names.
_ORT_DTYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(uint8)": "uint8",
    "tensor(int8)": "int8",
    "tensor(int32)": "int32",
    "tensor(int64)": "int64",
    "tensor(bool)": "bool",
}

Dim = int | str | None


class TensorSpec(NamedTuple):
    """One graph input or output: ``shape`` holds an int per static dimension,
    the symbolic name (str) or None per dynamic one; ``dtype`` is a numpy name."""

    name: str
    shape: tuple[Dim, ...]
    dtype: str


@dataclass(frozen=True)
class ModelInfo:
    """What an Ultralytics-style ONNX file says about itself.

    ``task`` is ``detect | segment | pose | ...`` or None when the metadata has
    none; ``names`` maps class id -> name (empty when absent); ``imgsz`` is
    ``(h, w)`` in pixels (from the metadata, else from a static input shape);
    ``batch`` is the static batch dimension of the first input, None when it
    is dynamic; ``kpt_shape`` is ``(K, d)`` with d = 2 (x, y) or 3 (x, y,
    visibility); ``half`` is True for fp16 exports or fp16 inputs; ``end2end``
    is True for NMS-free outputs ``(B, max_det, 6 + extra)``. ``metadata`` is
    the raw ``metadata_props`` (str -> str); ``producer`` the exporter's name
    (``pytorch`` for Ultralytics exports; empty when unknown).
    """

    path: Path
    task: str | None
    names: dict[int, str]
    imgsz: tuple[int, int] | None
    stride: int
    batch: int | None
    kpt_shape: tuple[int, int] | None
    half: bool
    end2end: bool
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    metadata: dict[str, str] = field(default_factory=dict)
    args: dict[str, Any] = field(default_factory=dict)
    producer: str = ""

    @property
    def input_dtype(self) -> np.dtype[Any]:
        """Numpy dtype of the first input (float32 or float16 for YOLO)."""
        return np.dtype(self.inputs[0].dtype) if self.inputs else np.dtype(np.float32)


# --------------------------------------------------------------------------- metadata


def _literal(text: str | None, key: str, path: Path) -> Any:
    """``ast.literal_eval`` of one metadata value (never ``eval``)."""
    if text is None:
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as e:
        raise ModelError(f"{path}: metadata {key!r} is not a Python literal: {text[:80]!r}") from e


def parse_names(value: Any, path: Path | str = "<names>") -> dict[int, str]:
    """Class names from a metadata string/dict/list to ``{id: name}``.

    >>> parse_names("{0: 'person', 1: 'car'}")
    {0: 'person', 1: 'car'}
    >>> parse_names(['a', 'b'])
    {0: 'a', 1: 'b'}
    """
    if isinstance(value, str):
        value = _literal(value, "names", Path(str(path)))
    if value is None:
        return {}
    if isinstance(value, list | tuple):
        return {i: str(n) for i, n in enumerate(value)}
    if isinstance(value, dict):
        try:
            return {int(k): str(v) for k, v in value.items()}
        except (TypeError, ValueError) as e:
            raise ModelError(f"{path}: class names have non-integer ids: {value!r:.80}") from e
    raise ModelError(f"{path}: class names must be a dict or list, got {type(value).__name__}")


def _parse_imgsz(value: Any, path: Path) -> tuple[int, int] | None:
    if value is None:
        return None
    if isinstance(value, int):
        return (value, value)
    if isinstance(value, list | tuple) and len(value) in (1, 2):
        h, w = (value[0], value[0]) if len(value) == 1 else value
        return (int(h), int(w))
    raise ModelError(f"{path}: metadata 'imgsz' must be an int or [h, w], got {value!r}")


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value)


def _static(dim: Dim) -> int | None:
    return dim if isinstance(dim, int) and dim > 0 else None


def build_model_info(
    path: Path,
    metadata: Mapping[str, str],
    inputs: tuple[TensorSpec, ...],
    outputs: tuple[TensorSpec, ...],
    producer: str = "",
) -> ModelInfo:
    """Assemble a :class:`ModelInfo` from raw metadata and graph signatures."""
    meta = dict(metadata)
    args = _literal(meta.get("args"), "args", path) or {}
    if not isinstance(args, dict):
        raise ModelError(f"{path}: metadata 'args' must be a dict, got {args!r:.80}")
    first = inputs[0] if inputs else TensorSpec("images", (), "float32")
    imgsz = _parse_imgsz(_literal(meta.get("imgsz"), "imgsz", path), path)
    if imgsz is None and len(first.shape) == 4:
        h, w = _static(first.shape[2]), _static(first.shape[3])
        imgsz = (h, w) if h and w else None
    kpt = _literal(meta.get("kpt_shape"), "kpt_shape", path)
    if kpt is not None and not (
        isinstance(kpt, list | tuple)
        and len(kpt) == 2
        and all(isinstance(v, int) for v in kpt)
        and kpt[1] in (2, 3)
    ):
        raise ModelError(f"{path}: metadata 'kpt_shape' must be [K, 2 or 3], got {kpt!r:.80}")
    kpt_shape = (kpt[0], kpt[1]) if kpt else None
    stride_val = _literal(meta.get("stride"), "stride", path)
    if isinstance(stride_val, list | tuple) and stride_val:
        stride_val = max(stride_val)
    if not isinstance(stride_val, int | float | type(None)):
        raise ModelError(f"{path}: metadata 'stride' must be a number, got {stride_val!r:.80}")
    stride = int(stride_val or 32)
    batch = _static(first.shape[0]) if first.shape else None
    half = _truthy(args.get("half", False)) or first.dtype == "float16"
    end2end = _truthy(meta.get("end2end", False)) or _truthy(args.get("nms", False))
    task = meta.get("task") or None
    return ModelInfo(
        path=path,
        task=task,
        names=parse_names(meta.get("names"), path),
        imgsz=imgsz,
        stride=stride,
        batch=batch,
        kpt_shape=kpt_shape,
        half=half,
        end2end=end2end,
        inputs=inputs,
        outputs=outputs,
        metadata=meta,
        args=args,
        producer=producer,
    )


def _check_file(path: Path) -> None:
    if not path.exists():
        raise ModelError(f"model file not found: {path}")
    if not path.is_file():
        raise ModelError(f"model path is not a file: {path}")


def read_model_info(path: str | os.PathLike[str]) -> ModelInfo:
    """Read metadata and input/output signatures of an ONNX file.

    Opens a CPU session without graph optimisation (onnxruntime only; no
    accelerator is touched). Raises ModelError for a missing file, a file that
    is not ONNX or that ONNX Runtime cannot load, or malformed metadata values.
    """
    p = Path(path)
    _check_file(p)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.log_severity_level = 3  # load errors become a ModelError, not console noise
    session = _open(p, [(CPU, {})], opts, metrics=None, stage="model info")
    return session_model_info(session, p)


def read_opsets(path: str | os.PathLike[str]) -> dict[str, int] | None:
    """``{domain: opset version}`` of an ONNX file (``ai.onnx`` for the default
    domain), or None when the optional ``onnx`` package is not installed or
    cannot parse the file; ONNX Runtime does not expose the opsets."""
    try:
        import onnx
        from google.protobuf.message import DecodeError
    except ImportError:
        logger.debug("onnx is not installed: opset versions not read")
        return None
    try:
        model = onnx.load(str(path), load_external_data=False)
    except (DecodeError, ValueError, OSError) as e:
        logger.warning("%s: onnx could not read the opsets: %s", path, e)
        return None
    return {(o.domain or "ai.onnx"): int(o.version) for o in model.opset_import}


def session_model_info(session: ort.InferenceSession, path: str | os.PathLike[str]) -> ModelInfo:
    """:class:`ModelInfo` of an open session."""

    def specs(args: list[Any]) -> tuple[TensorSpec, ...]:
        return tuple(
            TensorSpec(a.name, tuple(_ort_dim(d) for d in a.shape), _ORT_DTYPES.get(a.type, a.type))
            for a in args
        )

    modelmeta = session.get_modelmeta()
    return build_model_info(
        Path(path),
        dict(modelmeta.custom_metadata_map),
        specs(session.get_inputs()),
        specs(session.get_outputs()),
        producer=modelmeta.producer_name or "",
    )


def _ort_dim(d: Any) -> Dim:
    if isinstance(d, int):
        return d if d > 0 else None
    return str(d) if d else None


# --------------------------------------------------------------------------- providers


@dataclass(frozen=True)
class DeviceRequest:
    """A parsed ``device`` string: ``kind`` (auto|cpu|cuda|tensorrt|openvino|coreml)
    and the GPU index ``index`` (0 unless ``cuda:N`` / ``tensorrt:N``)."""

    kind: str
    index: int = 0


def parse_device(device: str) -> DeviceRequest:
    """Parse ``auto | cpu | cuda[:N] | tensorrt[:N] | openvino | coreml``.

    >>> parse_device("cuda:1")
    DeviceRequest(kind='cuda', index=1)
    """
    m = _DEVICE_RE.match(device.strip().lower())
    if not m or (m.group(2) is not None and m.group(1) not in ("cuda", "tensorrt")):
        raise ModelError(
            f"unknown device {device!r}: expected auto, cpu, cuda[:N], tensorrt[:N], "
            "openvino or coreml"
        )
    return DeviceRequest(m.group(1), int(m.group(2) or 0))


ProviderSpec = tuple[str, dict[str, Any]]


def provider_chain(
    req: DeviceRequest, *, half: bool = False, trt_cache_dir: Path | None = None
) -> list[ProviderSpec]:
    """The providers (with options) to try for ``req``, best first, CPU last.

    TensorRT builds engines once and caches them in ``trt_cache_dir`` (fp16
    when ``half``); CUDA and TensorRT run on GPU ``req.index``.
    """
    cuda: ProviderSpec = (CUDA, {"device_id": req.index})
    cpu: ProviderSpec = (CPU, {})
    if req.kind == "cpu":
        return [cpu]
    if req.kind == "cuda":
        return [cuda, cpu]
    if req.kind == "tensorrt":
        trt_opts: dict[str, Any] = {"device_id": req.index, "trt_fp16_enable": bool(half)}
        if trt_cache_dir is not None:
            trt_opts |= {
                "trt_engine_cache_enable": True,
                "trt_engine_cache_path": str(trt_cache_dir),
                "trt_timing_cache_enable": True,
                "trt_timing_cache_path": str(trt_cache_dir),
            }
        return [(TENSORRT, trt_opts), cuda, cpu]
    if req.kind == "openvino":
        return [(OPENVINO, {}), cpu]
    if req.kind == "coreml":
        return [(COREML, {}), cpu]
    # auto: the best accelerator this build has; TensorRT is never chosen
    # implicitly because its first engine build takes minutes.
    return [cuda, (COREML, {}), cpu]


def _fallback(metrics: Metrics | None, stage: str, reason: str, message: str) -> None:
    logger.warning(message)
    if metrics is not None:
        metrics.inc("edgewatch_fallbacks_total", stage=stage, reason=reason)


def create_session(
    path: str | os.PathLike[str],
    device: str = "auto",
    *,
    metrics: Metrics | None = None,
    stage: str = "detector",
    intra_op_num_threads: int | None = None,
    half: bool = False,
    trt_cache_dir: Path | None = None,
) -> ort.InferenceSession:
    """Open ``path`` on ``device``; fall back to what is available.

    A requested provider that is not in this onnxruntime build, or that fails
    to initialise, is skipped with ONE warning (per call) naming the provider,
    the reason and what runs instead; ``edgewatch_fallbacks_total{stage,
    reason}`` is incremented once (reason ``provider_unavailable`` or
    ``provider_failed``). ``auto`` picks the best provider this build has
    without a warning (CPU when it has no accelerator).
    """
    p = Path(path)
    _check_file(p)
    req = parse_device(device)
    chain = provider_chain(req, half=half, trt_cache_dir=trt_cache_dir)
    available = set(ort.get_available_providers())
    wanted = chain[0][0]
    usable = [spec for spec in chain if spec[0] in available or spec[0] == CPU]
    if req.kind != "auto" and wanted not in available:
        _fallback(
            metrics,
            stage,
            "provider_unavailable",
            f"{stage}: device {device!r} needs {wanted}, which this onnxruntime build lacks "
            f"(available: {', '.join(sorted(available))}); running on {usable[0][0]} instead",
        )
    elif req.kind == "tensorrt" and trt_cache_dir is not None:
        Path(trt_cache_dir).mkdir(parents=True, exist_ok=True)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if intra_op_num_threads is not None:
        opts.intra_op_num_threads = intra_op_num_threads
    return _open(p, usable, opts, metrics=metrics, stage=stage)


def _open(
    p: Path,
    usable: list[ProviderSpec],
    opts: ort.SessionOptions,
    *,
    metrics: Metrics | None,
    stage: str,
) -> ort.InferenceSession:
    """Create the session with ``usable``; retry on CPU if an accelerator fails.

    An accelerator that is installed but does not initialise (ORT then drops
    it silently, or raises) is a fallback too, warned about even for ``auto``.
    """
    names = [n for n, _ in usable]
    try:
        sess = ort.InferenceSession(
            str(p), sess_options=opts, providers=names, provider_options=[o for _, o in usable]
        )
    except _ort_state.InvalidProtobuf as e:
        raise ModelError(f"{p}: not an ONNX file (cannot parse the protobuf: {e})") from e
    except ORT_ERRORS as e:
        if names == [CPU]:
            raise ModelError(f"{p}: cannot load the ONNX graph: {e}") from e
        _fallback(
            metrics,
            stage,
            "provider_failed",
            f"{stage}: {names[0]} failed to initialise ({e}); running on CPU instead",
        )
        return _open(p, [(CPU, {})], opts, metrics=metrics, stage=stage)
    got = sess.get_providers()
    if names[0] not in got:
        _fallback(
            metrics,
            stage,
            "provider_failed",
            f"{stage}: {names[0]} is installed but did not initialise (missing CUDA/driver "
            f"libraries?); running on {got[0]} instead",
        )
    logger.info("%s: %s on %s", stage, p.name, ", ".join(got))
    return sess


def session_input_dtype(session: ort.InferenceSession) -> np.dtype[Any]:
    """Numpy dtype of the session's first input (float32 or float16 for YOLO)."""
    t = session.get_inputs()[0].type
    return np.dtype(_ORT_DTYPES.get(t, "float32"))
