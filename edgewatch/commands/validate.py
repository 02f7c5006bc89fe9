"""``edgewatch validate CONFIG``: check a pipeline YAML without running it."""

from __future__ import annotations

import argparse
from typing import Any

from edgewatch.config import load_config
from edgewatch.secrets import mask_uri


def register(sub: Any) -> None:
    p = sub.add_parser("validate", help="check a pipeline YAML", description=__doc__)
    p.add_argument("config", help="pipeline YAML")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.overrides)
    print(f"{args.config}: OK")
    for s in cfg.sources:
        print(f"  source {s.id}: {s.kind.value} {mask_uri(s.uri)}")
    print(f"  detector: {cfg.detector.model} (device {cfg.detector.device})")
    print(f"  tracker: {cfg.tracker.type}")
    if cfg.labeler is not None:
        print(f"  labeler: {cfg.labeler.model} ({len(cfg.labeler.labels)} labels)")
    for sink in cfg.sinks:
        print(f"  sink: {sink.type}")
    return 0
