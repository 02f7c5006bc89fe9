"""``edgewatch models info | fetch | quantize | fp32``: inspect, download and convert models.

- ``info MODEL.onnx``: task, classes, input size, stride, batch, inputs and
  outputs (name, shape, dtype), producer, opsets and every metadata entry
  (needs only onnxruntime; the opsets are shown when ``onnx`` is installed).
- ``fetch NAME [--dest DIR]``: download a registry model (SHA-256 checked,
  resumable); ``fetch --list`` shows the registry. ``--registry FILE`` adds
  entries from YAML; ``$EDGEWATCH_MODEL_MIRROR`` replaces the download host.
- ``quantize MODEL.onnx --calibrate VIDEO_OR_DIR``: static INT8 (QDQ) copy
  calibrated on your footage, with speed and detection agreement on held-out frames.
- ``fp32 MODEL.onnx --out OUT.onnx``: fp16 -> fp32 (faster on CPUs).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
from pathlib import Path
from typing import Any

from edgewatch.errors import ModelError
from edgewatch.pipeline.models.onnx import ModelInfo, TensorSpec, read_model_info, read_opsets


def register(sub: Any) -> None:
    p = sub.add_parser("models", help="inspect, download and convert models", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    msub = p.add_subparsers(dest="models_command", metavar="ACTION", required=True)

    info = msub.add_parser("info", help="print what an ONNX model says about itself")
    info.add_argument("model", help="ONNX file")
    info.add_argument("--json", action="store_true", help="one JSON object instead of text")
    info.set_defaults(func=cmd_info)

    fetch = msub.add_parser("fetch", help="download a known model (checksum verified)")
    fetch.add_argument("name", nargs="?", help="registry name (see --list)")
    fetch.add_argument("--dest", help="directory (default $EDGEWATCH_CACHE or "
                                      "~/.cache/edgewatch/models); files go to DEST/NAME/")
    fetch.add_argument("--list", action="store_true", help="list the known models and exit")
    fetch.add_argument("--registry", help="YAML file with extra entries (mirrors, tests)")
    fetch.add_argument("--mirror", help="base URL replacing the registry host "
                                        "(default $EDGEWATCH_MODEL_MIRROR)")
    fetch.add_argument("--timeout", type=float, default=30.0, help="socket timeout, seconds")
    fetch.set_defaults(func=cmd_fetch)

    q = msub.add_parser("quantize", help="static INT8 quantization calibrated on your footage")
    q.add_argument("model", help="float ONNX detector (fp16 is converted to fp32 first)")
    q.add_argument("--calibrate", required=True, metavar="VIDEO_OR_DIR",
                   help="video file or folder of images from the camera you will run on")
    q.add_argument("--frames", type=_positive, default=64, help="calibration frames (default 64)")
    q.add_argument("--eval-frames", type=_non_negative, default=16,
                   help="other frames held out to compare INT8 with float (default 16)")
    q.add_argument("--out", help="output file (default MODEL_int8.onnx)")
    q.add_argument("--method", choices=("minmax", "entropy", "percentile"), default="minmax",
                   help="calibration method (default minmax)")
    q.add_argument("--per-tensor", action="store_true", help="per-tensor weight scales")
    q.add_argument("--conf", type=float, default=0.25, help="confidence for the comparison")
    q.add_argument("--no-preprocess", action="store_true",
                   help="skip onnxruntime's shape inference/optimization before quantizing")
    q.add_argument("--json", action="store_true", help="print the report as JSON")
    q.set_defaults(func=cmd_quantize)

    f = msub.add_parser("fp32", help="convert an fp16 model to fp32 (for CPUs)")
    f.add_argument("model", help="fp16 ONNX file")
    f.add_argument("--out", required=True, help="fp32 ONNX file to write")
    f.set_defaults(func=cmd_fp32)


def _need_onnx() -> None:
    """The ``onnx`` package is an extra (``edgewatch[quantize]``): say so clearly."""
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise ModelError("this command needs the 'onnx' package: "
                         "pip install 'edgewatch[quantize]'") from None


def _unusable_dir(path: Path, option: str) -> str | None:
    """Create folder ``path`` (and parents); why it cannot be used, or None."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        return f"{option} {path}: cannot create this folder: {e.strerror or e}"
    if not os.access(path, os.W_OK):
        return f"{option} {path}: folder is not writable"
    return None


def _positive(text: str) -> int:
    v = int(text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {v}")
    return v


def _non_negative(text: str) -> int:
    v = int(text)
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {v}")
    return v


# --------------------------------------------------------------------------- info


def _shape(spec: TensorSpec) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in spec.shape) + "]"


def info_dict(info: ModelInfo, opsets: dict[str, int] | None = None) -> dict[str, Any]:
    """The ``models info --json`` object (``opset`` null when ``onnx`` is not installed)."""
    def tensors(specs: tuple[TensorSpec, ...]) -> list[dict[str, Any]]:
        return [{"name": s.name, "shape": list(s.shape), "dtype": s.dtype} for s in specs]

    return {
        "path": str(info.path), "task": info.task,
        "names": {str(k): v for k, v in sorted(info.names.items())},
        "imgsz": list(info.imgsz) if info.imgsz else None, "stride": info.stride,
        "batch": info.batch, "kpt_shape": list(info.kpt_shape) if info.kpt_shape else None,
        "half": info.half, "end2end": info.end2end,
        "inputs": tensors(info.inputs), "outputs": tensors(info.outputs),
        "producer": info.producer or None, "opset": opsets,
        "metadata": dict(info.metadata),
    }


def format_info(info: ModelInfo, opsets: dict[str, int] | None = None) -> str:
    """The ``models info`` text: one ``key: value`` per line, tensors and metadata indented."""
    names = ", ".join(f"{k}={v}" for k, v in sorted(info.names.items())) or "(none in metadata)"
    classes = textwrap.wrap(f"{len(info.names)}: {names}", 90) or [""]
    lines = [
        f"model:    {info.path}",
        f"task:     {info.task or '(not in metadata)'}",
        f"classes:  {classes[0]}",
        *(f"          {more}" for more in classes[1:]),
        f"imgsz:    {'x'.join(map(str, info.imgsz)) if info.imgsz else '(dynamic)'} (h x w)",
        f"stride:   {info.stride}",
        f"batch:    {info.batch if info.batch is not None else 'dynamic'}",
        f"half:     {info.half}",
        f"end2end:  {info.end2end}",
    ]
    if info.kpt_shape:
        lines.append(f"kpt_shape: {list(info.kpt_shape)}")
    lines.append(f"producer: {info.producer or '(unknown)'}")
    if opsets is None:
        lines.append("opset:    (not read: pip install onnx to show it)")
    else:
        lines.append("opset:    " + ", ".join(f"{d} {v}" for d, v in sorted(opsets.items())))
    for title, specs in (("inputs", info.inputs), ("outputs", info.outputs)):
        lines.append(f"{title}:")
        lines += [f"  {s.name}  {_shape(s)}  {s.dtype}" for s in specs]
    lines.append("metadata:" if info.metadata else "metadata: (none)")
    width = max((len(k) for k in info.metadata), default=0)
    lines += [f"  {k.ljust(width)}  {v}" for k, v in info.metadata.items()]
    return "\n".join(lines)


def cmd_info(args: argparse.Namespace) -> int:
    info = read_model_info(args.model)
    opsets = read_opsets(args.model)
    print(json.dumps(info_dict(info, opsets), indent=2) if args.json else format_info(info, opsets))
    return 0


# --------------------------------------------------------------------------- fetch


def cmd_fetch(args: argparse.Namespace) -> int:
    from edgewatch.pipeline.models.fetch import fetch_model
    from edgewatch.pipeline.models.registry import known_models, load_registry_file

    extra = load_registry_file(args.registry) if args.registry else ()
    registry = known_models(extra)
    if args.list:
        width = max((len(n) for n in registry), default=4)
        for name, entry in registry.items():
            print(f"{name.ljust(width)}  {entry.task:<8}  {entry.description}")
        return 0
    if not args.name:
        print("edgewatch models fetch: give a model NAME or --list", file=sys.stderr)
        return 2
    problem = _unusable_dir(Path(args.dest).expanduser(), "--dest") if args.dest else None
    if problem:
        print(f"edgewatch models fetch: {problem}", file=sys.stderr)
        return 2
    fetched = fetch_model(args.name, args.dest, registry=registry, mirror=args.mirror,
                          timeout=args.timeout)
    for f in fetched:
        how = "cached" if f.cached else ("resumed" if f.resumed else "downloaded")
        print(f"{f.path}  ({f.size} bytes, {how}, sha256 ok)")
    return 0


# --------------------------------------------------------------------------- quantize / fp32


def cmd_quantize(args: argparse.Namespace) -> int:
    from edgewatch.pipeline.models.quantize import quantize_yolo

    _need_onnx()
    r = quantize_yolo(
        args.model, args.calibrate, args.out, frames=args.frames, eval_frames=args.eval_frames,
        method=args.method, per_channel=not args.per_tensor, conf=args.conf,
        preprocess_graph=not args.no_preprocess,
    )
    a = r.agreement
    if args.json:
        print(json.dumps({
            "output": str(r.output), "calib_frames": list(r.calib_indices),
            "eval_frames": list(r.eval_indices), "float_excluded_nodes": list(r.excluded_nodes),
            "float_ms": r.float_ms, "int8_ms": r.int8_ms, "speedup": r.speedup,
            "float_boxes": a.ref_boxes, "int8_boxes": a.test_boxes, "matched": a.matched,
            "precision": a.precision, "recall": a.recall, "mean_iou": a.mean_iou,
            "converted_from_fp16": r.converted_from_fp16,
        }, indent=2))
        return 0
    print(f"wrote {r.output}")
    print(f"  calibrated on {len(r.calib_indices)} frames; {len(r.excluded_nodes)} head nodes "
          "kept in float")
    if not r.eval_indices:
        print("  no held-out frames (--eval-frames 0): speed and agreement not measured")
        return 0
    print(f"  inference, {len(r.eval_indices)} held-out frames (ms/frame):")
    print(f"    {'float':<6} {r.float_ms:8.1f}   {1000 / r.float_ms:6.1f} fps")
    print(f"    {'int8':<6} {r.int8_ms:8.1f}   {1000 / r.int8_ms:6.1f} fps   "
          f"({r.speedup:.2f}x)")
    print(f"  agreement with float at IoU 0.5 per class: {a.matched} of {a.ref_boxes} float "
          f"boxes matched by {a.test_boxes} int8 boxes")
    print(f"    precision {a.precision:.3f}  recall {a.recall:.3f}  mean IoU {a.mean_iou:.3f}")
    return 0


def cmd_fp32(args: argparse.Namespace) -> int:
    from edgewatch.pipeline.models.quantize import convert_to_fp32

    _need_onnx()
    out = Path(args.out)
    problem = _unusable_dir(out.parent, "--out") or (
        f"--out {out}: is a directory" if out.is_dir() else None
    )
    if problem:
        print(f"edgewatch models fp32: {problem}", file=sys.stderr)
        return 2
    r = convert_to_fp32(args.model, args.out)
    if r.tensors == 0 and r.casts_retargeted == 0:
        print(f"{args.model} has no float16 tensors; wrote an unchanged copy to {r.output}")
        return 0
    print(f"wrote {r.output}: {r.tensors} tensors to float32, {r.casts_retargeted} casts "
          f"retargeted, {r.casts_removed} float32->float32 casts removed")
    return 0

