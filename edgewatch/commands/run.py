"""``edgewatch run CONFIG``: run a pipeline until its sources end or a signal."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from types import FrameType
from typing import Any

from edgewatch.config import PipelineConfig, load_config
from edgewatch.errors import ConfigError
from edgewatch.logsetup import setup_logging
from edgewatch.pipeline.runner import Pipeline, RunSummary

log = logging.getLogger(__name__)


def register(sub: Any) -> None:
    p = sub.add_parser("run", help="run a pipeline YAML", description=__doc__)
    p.add_argument("config", help="pipeline YAML")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. detector.conf=0.4 (repeatable)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.overrides)
    _apply_log_config(cfg, args)
    progress = not args.no_progress and sys.stderr.isatty() and not cfg.sources[0].live
    return run_pipeline(cfg, progress=progress, config_path=args.config, overrides=args.overrides)


def _apply_log_config(cfg: PipelineConfig, args: argparse.Namespace) -> None:
    if cfg.log.json_format or cfg.log.level != "info":
        level = logging.DEBUG if args.verbose else getattr(logging, cfg.log.level.upper())
        setup_logging(level, json_format=cfg.log.json_format or args.log_json)


def run_pipeline(
    cfg: PipelineConfig,
    *,
    progress: bool = False,
    config_path: str | None = None,
    overrides: list[str] | None = None,
) -> int:
    """Run ``cfg`` with signal handling; print the summary; return an exit code.

    SIGINT/SIGTERM drain and finalize (exit 0); a second SIGINT forces exit
    130. SIGHUP reloads ``config_path`` (a bad file is refused and logged);
    reloads run one at a time, in a thread, and none starts once a stop signal
    came (the pipeline's shutdown waits for one in flight).
    """
    pipeline = Pipeline(cfg, progress=progress)
    signals = _Signals(pipeline, config_path, overrides or [])
    signals.install()
    try:
        summary = pipeline.run()
    finally:
        signals.restore()
    print_summary(summary)
    if summary.error:
        print(f"edgewatch: error: {summary.error}", file=sys.stderr)
        return 1
    if summary.total_frames == 0 and summary.failed_sources:
        for sid, why in summary.failed_sources.items():
            print(f"edgewatch: source {sid} failed: {why}", file=sys.stderr)
        return 1
    return 0


class _Signals:
    def __init__(self, pipeline: Pipeline, path: str | None, overrides: list[str]) -> None:
        self.pipeline, self.path, self.overrides = pipeline, path, overrides
        self.count = 0
        self.old: dict[int, Any] = {}
        self._reload_lock = threading.Lock()  # one SIGHUP reload at a time

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            self.old[sig] = signal.signal(sig, self._stop)
        if hasattr(signal, "SIGHUP"):
            self.old[signal.SIGHUP] = signal.signal(signal.SIGHUP, self._hup)

    def restore(self) -> None:
        for sig, handler in self.old.items():
            signal.signal(sig, handler)

    def _stop(self, signum: int, _frame: FrameType | None) -> None:
        self.count += 1
        if self.count > 1 and signum == signal.SIGINT:
            raise KeyboardInterrupt
        log.info("received %s", signal.Signals(signum).name)
        self.pipeline.stop()

    def _hup(self, _signum: int, _frame: FrameType | None) -> None:
        if self.path is None:
            log.warning("SIGHUP: no config file to reload")
            return
        if self.count:
            log.warning("SIGHUP: ignored, stopping")
            return
        threading.Thread(target=self._reload, name="reload", daemon=True).start()

    def _reload(self) -> None:
        # Serialized: a second SIGHUP reads the file after the first reload is applied.
        with self._reload_lock:
            if self.count:
                return
            try:
                new = load_config(self.path or "", self.overrides)
            except ConfigError as e:
                log.error("SIGHUP: config refused, keeping the running one:\n%s", e)
                return
            log.info("SIGHUP: reloading %s", self.path)
            self.pipeline.reload(new)


def print_summary(s: RunSummary) -> None:
    """The end-of-run summary on stdout."""
    print(f"processed {s.total_frames} frames in {s.elapsed_s:.1f} s ({s.fps:.2f} fps)")
    for sid, n in s.frames.items():
        print(f"  source {sid}: {n} frames")
    order = (
        "decode",
        "preprocess",
        "inference",
        "postprocess",
        "detect",
        "track",
        "label",
        "total",
    )
    stages = "  ".join(f"{k} {s.stage_ms[k]:.1f}" for k in order if k in s.stage_ms)
    print(f"  ms/frame: {stages}")
    if s.sink_ms:
        print("  sinks ms/message: " + "  ".join(f"{k} {v:.2f}" for k, v in s.sink_ms.items()))
    if s.drops:
        print("  drops: " + ", ".join(f"{k} {int(v)}" for k, v in s.drops.items()))
    if s.decode_errors:
        print(f"  decode errors (skipped): {int(s.decode_errors)}")
    if s.sink_errors:
        print("  sink errors: " + ", ".join(f"{k} {v}" for k, v in s.sink_errors.items()))
