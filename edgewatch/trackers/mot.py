"""MOT-challenge data: read sequences, run a tracker, write results, score them.

A sequence folder holds ``seqinfo.ini`` (``[Sequence]`` with ``name``,
``frameRate``, ``seqLength``, ``imWidth``, ``imHeight``, ``imDir``,
``imExt``), ``det/det.txt``, optionally ``gt/gt.txt`` and ``img1/``.
Text rows are ``frame, id, left, top, width, height, conf, ...`` with frames
counted from 1 and boxes in pixels (top-left corner plus size).

Scores: MOTA, MOTP, IDF1, ID switches and fragmentations come from
``motmetrics`` (IoU >= 0.5 to match); HOTA (with DetA, AssA, LocA) is
computed here following TrackEval's definition (mean over the 19 IoU
thresholds 0.05, 0.10, ..., 0.95). Ground-truth rows with a zero "consider"
flag are dropped; MOTChallenge's distractor-class preprocessing is not done.
"""

from __future__ import annotations

import configparser
import logging
import math
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import supervision as sv
from scipy.optimize import linear_sum_assignment

from edgewatch.config import BotSortConfig, ByteTrackConfig, NoTrackerConfig
from edgewatch.errors import ConfigError, SourceError
from edgewatch.trackers.base import Tracker
from edgewatch.trackers.matching import iou_matrix

log = logging.getLogger(__name__)

#: HOTA's localisation thresholds (TrackEval: ``np.arange(0.05, 0.99, 0.05)``).
HOTA_ALPHAS = np.arange(0.05, 0.99, 0.05)
_EPS = np.finfo(float).eps

TrackerConfigType = ByteTrackConfig | BotSortConfig | NoTrackerConfig


@dataclass(frozen=True)
class MotSequence:
    """One MOT sequence. ``dets``/``gt`` rows: ``frame, id, x, y, w, h, conf, class, vis``."""

    name: str
    path: Path
    fps: float
    length: int
    width: int
    height: int
    dets: np.ndarray
    gt: np.ndarray | None
    img_dir: Path | None = None
    im_ext: str = ".jpg"
    frames_by_index: dict[int, np.ndarray] = field(default_factory=dict, repr=False)

    def detections(self, frame: int) -> sv.Detections:
        """Detections of 1-based ``frame`` as xyxy pixels, confidence and class 0."""
        rows = self.frames_by_index.get(frame)
        if rows is None or len(rows) == 0:
            return sv.Detections.empty()
        xyxy = np.column_stack(
            [rows[:, 2], rows[:, 3], rows[:, 2] + rows[:, 4], rows[:, 3] + rows[:, 5]]
        )
        return sv.Detections(
            xyxy=xyxy.astype(np.float32),
            confidence=rows[:, 6].astype(np.float32),
            class_id=np.zeros(len(rows), dtype=np.int64),
        )

    def image(self, frame: int) -> np.ndarray | None:
        """The BGR image of 1-based ``frame``, or None without ``img1/``."""
        if self.img_dir is None:
            return None
        p = self.img_dir / f"{frame:06d}{self.im_ext}"
        img = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if img is None:
            raise SourceError(f"{self.name}: cannot read frame image {p}")
        return img


def read_mot_txt(path: Path) -> np.ndarray:
    """``(N, 9)`` float64 rows of a MOT text file (missing columns filled with -1).

    A NaN or infinite value is a :class:`SourceError` naming the file and line.
    """
    try:
        data = np.loadtxt(path, delimiter=",", ndmin=2, dtype=np.float64)
    except (OSError, ValueError) as e:
        raise SourceError(f"cannot read MOT file {path}: {e}") from None
    if data.size == 0:
        return np.zeros((0, 9))
    if data.shape[1] < 7:
        raise SourceError(f"{path}: expected >= 7 columns, found {data.shape[1]}")
    bad = np.flatnonzero(~np.isfinite(data).all(axis=1))
    if len(bad):
        # loadtxt skips blank and '#' lines: map the data row back to its line number.
        lines = path.read_text(errors="replace").splitlines()
        numbers = [i for i, ln in enumerate(lines, 1) if ln.strip() and ln.lstrip()[0] != "#"]
        row = int(bad[0])
        line = numbers[row] if row < len(numbers) else row + 1
        raise SourceError(f"{path}:{line}: NaN or infinite value: {lines[line - 1].strip()!r}")
    out = np.full((len(data), 9), -1.0)
    out[:, : min(9, data.shape[1])] = data[:, :9]
    return out


def _ini_number(
    section: Mapping[str, str], key: str, default: float, ini: Path, *, integer: bool = False
) -> float:
    """``section[key]`` as a finite number >= 0 (``default`` when absent)."""
    raw = section.get(key)
    if raw is None:
        return default
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        value = -1
    if not math.isfinite(value) or value < 0:
        kind = "an integer" if integer else "a number"
        raise SourceError(f"{ini}: {key}={raw!r} is not {kind} >= 0")
    return value


def read_sequence(path: str | Path) -> MotSequence:
    """Read one sequence folder (see the module docstring).

    A malformed ``seqinfo.ini`` or ``det.txt`` is a :class:`SourceError` naming the
    file and the line or key.
    """
    p = Path(path)
    ini_path = p / "seqinfo.ini"
    ini = configparser.ConfigParser()
    try:
        if not ini.read(ini_path):
            raise SourceError(f"{p}: no seqinfo.ini")
    except configparser.Error as e:
        raise SourceError(f"{ini_path}: {' '.join(e.message.split())}") from None
    s = ini["Sequence"] if ini.has_section("Sequence") else ini.defaults()
    fps = _ini_number(s, "frameRate", 30.0, ini_path)
    if fps == 0:
        raise SourceError(f"{ini_path}: frameRate={s.get('frameRate')!r} is not > 0")
    seq_length = int(_ini_number(s, "seqLength", 0, ini_path, integer=True))
    width = int(_ini_number(s, "imWidth", 0, ini_path, integer=True))
    height = int(_ini_number(s, "imHeight", 0, ini_path, integer=True))
    dets = read_mot_txt(p / "det" / "det.txt")
    gt_path = p / "gt" / "gt.txt"
    gt = read_mot_txt(gt_path) if gt_path.is_file() else None
    if gt is not None:
        gt = gt[gt[:, 6] != 0]
    img_dir = p / s.get("imDir", "img1")
    length = seq_length or int(max(dets[:, 0].max(initial=0), 0))
    by_frame = {int(f): dets[dets[:, 0] == f] for f in np.unique(dets[:, 0])}
    return MotSequence(
        name=s.get("name", p.name),
        path=p,
        fps=fps,
        length=length,
        width=width,
        height=height,
        dets=dets,
        gt=gt,
        img_dir=img_dir if img_dir.is_dir() else None,
        im_ext=s.get("imExt", ".jpg"),
        frames_by_index=by_frame,
    )


def find_sequences(path: str | Path) -> list[Path]:
    """``path`` itself if it is a sequence, else its sub-folders that are (sorted)."""
    p = Path(path)
    if (p / "seqinfo.ini").is_file():
        return [p]
    seqs = sorted(d for d in p.iterdir() if (d / "seqinfo.ini").is_file()) if p.is_dir() else []
    if not seqs:
        raise SourceError(f"{p}: neither a MOT sequence nor a folder of sequences")
    return seqs


def run_tracker(
    seq: MotSequence, tracker: Tracker, use_images: bool = True
) -> tuple[np.ndarray, float]:
    """Track every frame; returns ``(results (N, 7) frame,id,x,y,w,h,conf, ms per update)``."""
    tracker.reset()
    rows: list[np.ndarray] = []
    spent = 0.0
    for frame in range(1, seq.length + 1):
        dets = seq.detections(frame)
        image = seq.image(frame) if use_images else None
        t0 = time.perf_counter()
        out = tracker.update(dets, image)
        spent += time.perf_counter() - t0
        if len(out) == 0 or out.tracker_id is None:
            continue
        b = out.xyxy.astype(np.float64)
        conf = out.confidence if out.confidence is not None else np.ones(len(out))
        rows.append(
            np.column_stack(
                [
                    np.full(len(out), frame),
                    out.tracker_id,
                    b[:, 0],
                    b[:, 1],
                    b[:, 2] - b[:, 0],
                    b[:, 3] - b[:, 1],
                    conf,
                ]
            )
        )
    res = np.concatenate(rows) if rows else np.zeros((0, 7))
    return res, 1000.0 * spent / max(1, seq.length)


def write_results(path: str | Path, results: np.ndarray) -> None:
    """Write MOT result rows ``frame,id,x,y,w,h,conf,-1,-1,-1``."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with p.open("w", encoding="utf-8") as f:
        for r in results:
            f.write(
                f"{int(r[0])},{int(r[1])},{r[2]:.2f},{r[3]:.2f},{r[4]:.2f},{r[5]:.2f},{r[6]:.3f},-1,-1,-1\n"
            )


def _frames(
    gt: np.ndarray, res: np.ndarray
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """Per frame: gt ids, tracker ids and their IoU matrix (boxes given as x, y, w, h)."""
    frames = np.union1d(gt[:, 0], res[:, 0]).astype(np.int64)
    for f in frames:
        g = gt[gt[:, 0] == f]
        r = res[res[:, 0] == f]
        gb = np.column_stack([g[:, 2], g[:, 3], g[:, 2] + g[:, 4], g[:, 3] + g[:, 5]])
        rb = np.column_stack([r[:, 2], r[:, 3], r[:, 2] + r[:, 4], r[:, 3] + r[:, 5]])
        yield f, g[:, 1].astype(np.int64), r[:, 1].astype(np.int64), gb, iou_matrix(gb, rb)


def clear_metrics(gt: np.ndarray, res: np.ndarray) -> dict[str, float]:
    """MOTA, MOTP (mean 1 - IoU of matches), IDF1, switches, fragmentations etc. via motmetrics."""
    import motmetrics as mm

    acc = mm.MOTAccumulator(auto_id=False)
    for f, gids, rids, _, iou in _frames(gt, res):
        dist = np.where(iou >= 0.5, 1.0 - iou, np.nan)
        acc.update(gids.tolist(), rids.tolist(), dist, frameid=int(f))
    names = [
        "mota",
        "motp",
        "idf1",
        "idp",
        "idr",
        "num_switches",
        "num_fragmentations",
        "num_detections",
        "num_misses",
        "num_false_positives",
        "num_objects",
        "num_unique_objects",
        "mostly_tracked",
        "mostly_lost",
    ]
    summary = mm.metrics.create().compute(acc, metrics=names, name="seq")
    return {k: float(v) for k, v in summary.iloc[0].to_dict().items()}


def hota(gt: np.ndarray, res: np.ndarray) -> dict[str, np.ndarray | float]:
    """HOTA as TrackEval: per-alpha arrays ``HOTA_alpha`` etc. and their means ``HOTA``, ``DetA``...

    Rows are ``frame, id, x, y, w, h, ...`` (pixels).
    """
    na = len(HOTA_ALPHAS)
    tp, fn, fp, loca = np.zeros(na), np.zeros(na), np.zeros(na), np.zeros(na)
    g_ids, g_inv = np.unique(gt[:, 1].astype(np.int64), return_inverse=True)
    r_ids, r_inv = np.unique(res[:, 1].astype(np.int64), return_inverse=True)
    gt_c = gt.copy()
    res_c = res.copy()
    gt_c[:, 1], res_c[:, 1] = g_inv, r_inv
    frames = list(_frames(gt_c, res_c))
    potential = np.zeros((len(g_ids), len(r_ids)))
    g_count = np.zeros((len(g_ids), 1))
    r_count = np.zeros((1, len(r_ids)))
    for _, gi, ri, _, sim in frames:
        denom = sim.sum(0)[None, :] + sim.sum(1)[:, None] - sim
        frac = np.where(denom > _EPS, sim / np.where(denom > _EPS, denom, 1.0), 0.0)
        potential[gi[:, None], ri[None, :]] += frac
        g_count[gi] += 1
        r_count[0, ri] += 1
    global_score = potential / np.maximum(g_count + r_count - potential, _EPS)
    counts = np.zeros((na, len(g_ids), len(r_ids)))
    for _, gi, ri, _, sim in frames:
        if len(gi) == 0 or len(ri) == 0:
            fn += len(gi)
            fp += len(ri)
            continue
        score = global_score[gi[:, None], ri[None, :]] * sim
        rows, cols = linear_sum_assignment(-score)
        for a, alpha in enumerate(HOTA_ALPHAS):
            ok = sim[rows, cols] >= alpha - _EPS
            mr, mc = rows[ok], cols[ok]
            tp[a] += len(mr)
            fn[a] += len(gi) - len(mr)
            fp[a] += len(ri) - len(mr)
            loca[a] += sim[mr, mc].sum()
            counts[a, gi[mr], ri[mc]] += 1
    return _hota_summary(tp, fn, fp, loca, counts, g_count, r_count)


def _hota_summary(
    tp: np.ndarray,
    fn: np.ndarray,
    fp: np.ndarray,
    loca: np.ndarray,
    counts: np.ndarray,
    g_count: np.ndarray,
    r_count: np.ndarray,
) -> dict[str, np.ndarray | float]:
    na = len(tp)
    ass_a, ass_re, ass_pr = np.zeros(na), np.zeros(na), np.zeros(na)
    for a in range(na):
        m = counts[a]
        ass_a[a] = np.sum(m * (m / np.maximum(1, g_count + r_count - m))) / max(1.0, tp[a])
        ass_re[a] = np.sum(m * (m / np.maximum(1, g_count))) / max(1.0, tp[a])
        ass_pr[a] = np.sum(m * (m / np.maximum(1, r_count))) / max(1.0, tp[a])
    det_a = tp / np.maximum(1, tp + fn + fp)
    det_re = tp / np.maximum(1, tp + fn)
    det_pr = tp / np.maximum(1, tp + fp)
    loc_a = np.maximum(1e-10, loca) / np.maximum(1e-10, tp)
    hota_a = np.sqrt(det_a * ass_a)
    out: dict[str, np.ndarray | float] = {
        "HOTA_alpha": hota_a,
        "DetA_alpha": det_a,
        "AssA_alpha": ass_a,
        "HOTA_TP": tp,
        "HOTA_FN": fn,
        "HOTA_FP": fp,
    }
    for name, arr in (
        ("HOTA", hota_a),
        ("DetA", det_a),
        ("AssA", ass_a),
        ("DetRe", det_re),
        ("DetPr", det_pr),
        ("AssRe", ass_re),
        ("AssPr", ass_pr),
        ("LocA", loc_a),
    ):
        out[name] = float(np.mean(arr))
    return out


def evaluate(gt: np.ndarray, res: np.ndarray) -> dict[str, float]:
    """HOTA, DetA, AssA, MOTA, IDF1, IDs, Frag, ... of results against ground truth."""
    h = hota(gt, res)
    scores = {k: float(v) for k, v in h.items() if isinstance(v, float)}
    scores.update(clear_metrics(gt, res))
    return scores


def load_tracker_config(
    spec: str, overrides: list[str] | tuple[str, ...] = ()
) -> TrackerConfigType:
    """A tracker config from a name (``bytetrack``, ``botsort``, ``none``) or a tracker YAML.

    The YAML may be Ultralytics' (``tracker_type``). ``overrides`` are
    ``key=value`` strings (``track_buffer=60``; a ``tracker.`` prefix is allowed).
    Raises :class:`~edgewatch.errors.ConfigError`.
    """
    import yaml
    from pydantic import TypeAdapter, ValidationError

    from edgewatch.config import TrackerConfig, apply_override

    data: dict[str, object]
    if spec in ("bytetrack", "botsort", "none"):
        data, name = {"type": spec}, spec
    else:
        p = Path(spec)
        try:
            loaded = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except OSError as e:
            raise ConfigError(
                "cannot read tracker config", [(spec, f"cannot read: {e.strerror}")]
            ) from None
        except yaml.YAMLError as e:
            raise ConfigError("invalid YAML", [(spec, f"invalid YAML: {e}")]) from None
        if not isinstance(loaded, dict):
            raise ConfigError("tracker config must be a mapping", [(spec, "not a mapping")])
        data, name = dict(loaded), spec
    if "tracker_type" in data:
        data.setdefault("type", data.pop("tracker_type"))
    for o in overrides:
        apply_override(data, o.removeprefix("tracker."))
    try:
        return TypeAdapter(TrackerConfig).validate_python(data)
    except ValidationError as e:
        problems = [
            (
                f"{name} {'.'.join(str(x) for x in err['loc'])}",
                "unknown key" if err["type"] == "extra_forbidden" else err["msg"],
            )
            for err in e.errors(include_url=False)
        ]
        raise ConfigError("invalid tracker config", problems) from None
