"""``edgewatch validate CONFIG``: check a pipeline YAML without running it.

The same checks as ``run`` before its first frame: the config itself, then the
models. The detector is opened with ONNX Runtime on CPU and its task, class
names, input size and batch are resolved by the code ``run`` uses
(:meth:`YoloDetector.load`, without the warm-up inference); the labeler's CLIP
encoders and tokenizer are loaded the same way. A model that cannot be used
is a config error at ``detector.model`` / ``labeler.model`` (exit 2).
"""

from __future__ import annotations

import argparse
from typing import Any

from edgewatch.config import PipelineConfig, load_config
from edgewatch.errors import ConfigError, ModelError
from edgewatch.secrets import mask_uri


def register(sub: Any) -> None:
    p = sub.add_parser("validate", help="check a pipeline YAML", description=__doc__)
    p.add_argument("config", help="pipeline YAML")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.overrides)
    detector = _detector_line(cfg, args.config)
    labeler = _labeler_line(cfg, args.config)
    print(f"{args.config}: OK")
    print(f"  {len(cfg.sources)} source{'s' if len(cfg.sources) != 1 else ''}:")
    for s in cfg.sources:
        print(f"    {s.id}: {s.kind.value} {mask_uri(s.uri)}")
    print(f"  detector: {detector}")
    print(f"  tracker: {cfg.tracker.type}")
    if labeler:
        print(f"  labeler: {labeler}")
    for sink in cfg.sinks:
        print(f"  sink: {sink.type}")
    return 0


def _model_error(config: str, key: str, err: ModelError) -> ConfigError:
    return ConfigError("model cannot be used", [(f"{config} {key}", str(err))])


def _detector_line(cfg: PipelineConfig, config: str) -> str:
    """Load the detector on CPU as ``run`` would; a summary of what it resolved."""
    from edgewatch.pipeline.models.yolo import YoloDetector

    d = cfg.detector
    det = YoloDetector(d.model_copy(update={"device": "cpu", "warmup": False}))
    try:
        det.load()
    except ModelError as e:
        raise _model_error(config, "detector.model", e) from None
    names = det.names
    shown = ", ".join(names[k] for k in sorted(names)[:10]) + (", ..." if len(names) > 10 else "")
    h, w = det.imgsz
    return (
        f"{d.model}: task {det.task.value}, {len(names)} classes ({shown}), "
        f"imgsz {h}x{w} (h x w), batch {det.max_batch}, "
        f"{'end-to-end' if det.info.end2end else 'NMS'}, input {det.info.input_dtype.name}; "
        f"opened on CPU, runs on device {d.device}"
    )


def _labeler_line(cfg: PipelineConfig, config: str) -> str | None:
    """Load the CLIP encoders and tokenizer on CPU as the labeler does; None without one."""
    if cfg.labeler is None:
        return None
    from edgewatch.pipeline.models.clip import ClipModel

    lab = cfg.labeler
    try:
        clip = ClipModel.load(
            lab.model,
            device="cpu",
            intra_op_num_threads=lab.intra_op_num_threads,
            logit_scale=lab.logit_scale,
            crop_mode=lab.crop_mode,
        )
    except ModelError as e:
        raise _model_error(config, "labeler.model", e) from None
    n = len(lab.labels) + sum(len(g) for g in lab.groups.values())
    return (
        f"{lab.model}: image {clip.image_size}x{clip.image_size}, embedding {clip.embed_dim}, "
        f"{n} labels"
    )
