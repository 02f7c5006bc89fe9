"""``edgewatch demo``: fetch the samples if missing and run configs/demo.yaml."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from edgewatch.commands.run import run_pipeline
from edgewatch.config import load_config
from edgewatch.errors import EdgewatchError
from edgewatch.samples import FetchError, fetch_samples


def register(sub: Any) -> None:
    p = sub.add_parser("demo", help="run the demo on real CCTV footage", description=__doc__)
    p.add_argument("--frames", type=int, default=None, help="stop after N frames")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.set_defaults(func=main)


def repo_root() -> Path:
    """The checkout that holds configs/demo.yaml (the demo runs from there)."""
    here = Path(__file__).resolve().parents[2]
    for root in (Path.cwd(), here):
        if (root / "configs" / "demo.yaml").is_file():
            return root
    raise EdgewatchError("configs/demo.yaml not found: run the demo from an edgewatch checkout")


def main(args: argparse.Namespace) -> int:
    root = repo_root()
    os.chdir(root)
    try:
        samples = fetch_samples(root / "samples")
    except FetchError as e:
        raise EdgewatchError(f"cannot fetch the samples: {e}") from None
    overrides = list(args.overrides)
    if args.frames:
        overrides.append(f"sources[0].max_frames={args.frames}")
    cfg = load_config(root / "configs" / "demo.yaml", overrides)
    print(f"demo: {samples.video} -> {samples.model}", flush=True)
    code = run_pipeline(cfg, progress=sys.stderr.isatty(), config_path=None)
    print("outputs:")
    for sink in cfg.sinks:
        path = getattr(sink, "path", None)
        if path:
            print(f"  {sink.type:6s} {root / path.replace('{source}', cfg.sources[0].id)}")
        elif sink.type == "zmq":
            print(f"  zmq    {sink.endpoint}  (watch with: edgewatch subscribe {sink.endpoint})")
    return code
