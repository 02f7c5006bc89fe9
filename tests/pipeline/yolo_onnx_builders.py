"""Build tiny Ultralytics-style ONNX models at test time (no weights on disk).

Every output is ``const + mean(images) * weight`` (broadcast over the batch):
with ``weight`` zero the model returns ``const`` exactly for any input; with a
non-zero ``weight`` the output depends on the picture, so batching mix-ups
show. Metadata goes into ``metadata_props`` as Ultralytics writes it (Python
literal strings).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 13


def ultralytics_metadata(
    task: str = "detect",
    names: Mapping[int, str] | None = None,
    imgsz: tuple[int, int] = (320, 320),
    batch: int = 1,
    half: bool = False,
    dynamic: bool = False,
    nms: bool = False,
    kpt_shape: tuple[int, int] | None = None,
    end2end: bool | None = None,
) -> dict[str, str]:
    """Metadata strings the way Ultralytics' exporter writes them."""
    names = dict(names or {0: "person", 1: "car"})
    meta = {
        "description": "test model",
        "author": "Ultralytics",
        "version": "8.3.0",
        "stride": "32",
        "task": task,
        "batch": str(batch),
        "imgsz": str(list(imgsz)),
        "names": repr(names),
        "channels": "3",
        "args": repr(
            {
                "batch": batch,
                "half": half,
                "dynamic": dynamic,
                "simplify": True,
                "opset": OPSET,
                "nms": nms,
            }
        ),
    }
    if kpt_shape is not None:
        meta["kpt_shape"] = str(list(kpt_shape))
    if end2end is not None:
        meta["end2end"] = str(end2end)
    return meta


def build_model(
    path: Path,
    outputs: Mapping[str, np.ndarray],
    *,
    imgsz: tuple[int, int] = (320, 320),
    batch: int | None = 1,
    fp16: bool = False,
    metadata: Mapping[str, str] | None = None,
    weights: Mapping[str, np.ndarray] | None = None,
) -> Path:
    """Write an ONNX model with input ``images`` (batch or 'batch', 3, h, w).

    ``outputs`` maps output name -> constant of shape (1, ...); ``batch=None``
    makes the batch dimension dynamic. ``weights`` (same shapes) scale the
    per-image mean of the input added to each output.
    """
    dtype = np.float16 if fp16 else np.float32
    elem = TensorProto.FLOAT16 if fp16 else TensorProto.FLOAT
    bdim: int | str = "batch" if batch is None else batch
    inp = helper.make_tensor_value_info("images", elem, [bdim, 3, *imgsz])
    nodes = [helper.make_node("ReduceMean", ["images"], ["mean"], axes=[1, 2, 3], keepdims=0)]
    inits = []
    outs = []
    for name, const in outputs.items():
        const = np.asarray(const, dtype=dtype)
        rank = const.ndim
        w = np.zeros_like(const) if weights is None or name not in weights else weights[name]
        inits += [
            numpy_helper.from_array(const, f"{name}_c"),
            numpy_helper.from_array(np.asarray(w, dtype=dtype), f"{name}_w"),
            numpy_helper.from_array(np.array([-1] + [1] * (rank - 1), np.int64), f"{name}_s"),
        ]
        nodes += [
            helper.make_node("Reshape", ["mean", f"{name}_s"], [f"{name}_m"]),
            helper.make_node("Mul", [f"{name}_m", f"{name}_w"], [f"{name}_mw"]),
            helper.make_node("Add", [f"{name}_c", f"{name}_mw"], [name]),
        ]
        outs.append(helper.make_tensor_value_info(name, elem, [bdim, *const.shape[1:]]))
    graph = helper.make_graph(nodes, "yolo_test", [inp], outs, initializer=inits)
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="pytorch"
    )
    model.ir_version = 8
    for k, v in (metadata or {}).items():
        model.metadata_props.add(key=k, value=v)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def detect_output(
    boxes_cxcywh: np.ndarray, scores: np.ndarray, n_anchors: int, extra: np.ndarray | None = None
) -> np.ndarray:
    """``(1, 4 + nc + E, n_anchors)``: the given anchors first, zeros after.

    ``boxes_cxcywh`` (M, 4) input pixels, ``scores`` (M, nc), ``extra`` (M, E).
    """
    m, nc = scores.shape
    e = 0 if extra is None else extra.shape[1]
    out = np.zeros((1, 4 + nc + e, n_anchors), np.float32)
    out[0, :4, :m] = boxes_cxcywh.T
    out[0, 4 : 4 + nc, :m] = scores.T
    if extra is not None:
        out[0, 4 + nc :, :m] = extra.T
    return out
