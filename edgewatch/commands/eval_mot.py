"""``edgewatch eval-mot DIR``: track MOT-format detections and score them.

DIR is one sequence (``seqinfo.ini``, ``det/det.txt``, optional ``gt/gt.txt``
and ``img1/``) or a folder of sequences. Results are written as
``OUT/<sequence>.txt`` in MOT format; with ground truth, HOTA, MOTA, IDF1, ID
switches, fragmentations and milliseconds per tracker update are printed per
sequence (plus a combined row for several sequences).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from edgewatch.errors import SourceError
from edgewatch.trackers import build_tracker
from edgewatch.trackers.mot import (
    evaluate,
    find_sequences,
    load_tracker_config,
    read_sequence,
    run_tracker,
    write_results,
)

_COLUMNS = (
    ("HOTA", "HOTA", 100.0),
    ("DetA", "DetA", 100.0),
    ("AssA", "AssA", 100.0),
    ("MOTA", "mota", 100.0),
    ("IDF1", "idf1", 100.0),
    ("IDs", "num_switches", 1.0),
    ("Frag", "num_fragmentations", 1.0),
)


def register(sub: Any) -> None:
    p = sub.add_parser(
        "eval-mot", help="run a tracker on MOT-format data and score it", description=__doc__
    )
    p.add_argument("dir", type=Path, help="a MOT sequence folder, or a folder of them")
    p.add_argument(
        "--tracker", default="bytetrack", help="bytetrack | botsort | none | CONFIG.yaml"
    )
    p.add_argument(
        "--out", type=Path, default=Path("out/mot"), help="folder for <sequence>.txt results"
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a tracker option, e.g. --set track_buffer=60",
    )
    p.add_argument("--no-images", action="store_true", help="do not read img1/ (no GMC or ReID)")
    p.set_defaults(func=main)


def _row(name: str, scores: dict[str, float] | None, ms: float) -> str:
    if scores is None:
        return f"{name:24s} " + " ".join(f"{'-':>7s}" for _ in _COLUMNS) + f" {ms:8.3f}"
    cells = []
    for _, key, scale in _COLUMNS:
        v = scores[key] * scale
        cells.append(f"{v:7.0f}" if scale == 1.0 else f"{v:7.2f}")
    return f"{name:24s} " + " ".join(cells) + f" {ms:8.3f}"


def result_name(name: str) -> str:
    """The ``<sequence>.txt`` file name for a sequence name from ``seqinfo.ini``.

    Only the last path component is kept, so a name cannot write outside ``--out``.

    >>> result_name("../../../tmp/escape"), result_name("MOT17-02-FRCNN")
    ('escape.txt', 'MOT17-02-FRCNN.txt')
    """
    base = name.replace("\\", "/").rsplit("/", 1)[-1].replace("\0", "").strip()
    if base in ("", ".", ".."):
        raise ValueError(f"sequence name {name!r} gives no usable file name")
    return f"{base}.txt"


def _checked_name(name: str, path: Path) -> str:
    try:
        return result_name(name)
    except ValueError as e:
        raise SourceError(f"{path / 'seqinfo.ini'}: name: {e}") from None


def main(args: argparse.Namespace) -> int:
    cfg = load_tracker_config(args.tracker, args.overrides)
    try:
        seqs = find_sequences(args.dir)
        # Malformed input data is a bad argument (exit 2), found before any tracking.
        sequences = [read_sequence(p) for p in seqs]
        names = [_checked_name(seq.name, seq.path) for seq in sequences]
    except SourceError as e:
        print(f"edgewatch eval-mot: {e}", file=sys.stderr)
        return 2
    if any((p / "gt" / "gt.txt").is_file() for p in seqs):
        try:
            import motmetrics  # noqa: F401  (scoring needs it; say so before tracking)
        except ImportError as e:
            print(
                f"edgewatch eval-mot: scoring needs motmetrics, which cannot be imported ({e}); "
                "install it with: pip install 'edgewatch[mot]'",
                file=sys.stderr,
            )
            return 2
    print(
        f"{'sequence':24s} " + " ".join(f"{c:>7s}" for c, _, _ in _COLUMNS) + f" {'ms/frame':>8s}"
    )
    all_gt, all_res, total_ms, total_frames, offset, id_offset = [], [], 0.0, 0, 0, 0
    for seq, name in zip(sequences, names, strict=True):
        tracker = build_tracker(cfg, seq.fps)
        res, ms = run_tracker(seq, tracker, use_images=not args.no_images)
        write_results(args.out / name, res)
        total_ms += ms * seq.length
        total_frames += seq.length
        scores = None
        if seq.gt is not None:
            scores = evaluate(seq.gt, res)
            # Offset frames and ids so that sequences stay apart in the combined score.
            g, r = seq.gt.copy(), res.copy()
            g[:, 0] += offset
            r[:, 0] += offset
            g[:, 1] += id_offset
            r[:, 1] += id_offset
            id_offset = int(max(g[:, 1].max(initial=0), r[:, 1].max(initial=0))) + 1
            all_gt.append(g)
            all_res.append(r)
        offset += seq.length + 1
        print(_row(seq.name, scores, ms), flush=True)
    if len(all_gt) > 1:
        combined = evaluate(np.concatenate(all_gt), np.concatenate(all_res))
        print(_row("COMBINED", combined, total_ms / max(1, total_frames)))
    print(f"results: {args.out}/")
    return 0
