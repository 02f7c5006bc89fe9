"""Synthetic tracking scenes with known ground truth, written as MOT folders.

Objects move at constant velocity in *world* pixels; the camera may pan, so
an object's image position is ``world - camera_offset(frame)``. Frames are
1-based, boxes are ``x, y, w, h`` (top-left and size) in image pixels.
Detections are the ground-truth boxes, minus the frames listed in
``Obj.missed``, with score ``LOW_SCORE`` in the frames of ``Obj.low`` and
``HIGH_SCORE`` otherwise, optionally jittered by seeded noise.

Rendered frames show a textured background (smoothed noise, strong corners
so optical flow has something to follow) and each object as a flat-coloured
box with a dark border.
"""

from __future__ import annotations

import configparser
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

HIGH_SCORE = 0.9
LOW_SCORE = 0.15


@dataclass(frozen=True)
class Obj:
    """One object: frames ``start..end`` (inclusive), world top-left at ``start``, px/frame."""

    id: int
    start: int
    end: int
    x: float
    y: float
    vx: float
    vy: float
    w: float = 30.0
    h: float = 70.0
    missed: frozenset[int] = frozenset()
    low: frozenset[int] = frozenset()


@dataclass(frozen=True)
class Scene:
    name: str
    length: int
    objects: tuple[Obj, ...]
    width: int = 640
    height: int = 360
    fps: float = 30.0
    #: camera offset (world -> image shift) in pixels, per frame
    camera: Callable[[int], tuple[float, float]] = field(default=lambda f: (0.0, 0.0))
    noise: float = 0.0
    seed: int = 0

    def gt_rows(self) -> np.ndarray:
        """``(N, 9)``: frame, id, x, y, w, h, 1, 1, 1 (objects inside the image only)."""
        rows = []
        for f in range(1, self.length + 1):
            cx, cy = self.camera(f)
            for o in self.objects:
                if not o.start <= f <= o.end:
                    continue
                x = o.x + o.vx * (f - o.start) - cx
                y = o.y + o.vy * (f - o.start) - cy
                if x < 0 or y < 0 or x + o.w > self.width or y + o.h > self.height:
                    continue
                rows.append([f, o.id, x, y, o.w, o.h, 1, 1, 1])
        return np.array(rows, dtype=np.float64).reshape(-1, 9)

    def det_rows(self) -> np.ndarray:
        """``(N, 10)`` MOT detection rows: frame, -1, x, y, w, h, score, -1, -1, -1."""
        gt = self.gt_rows()
        by_id = {o.id: o for o in self.objects}
        rng = np.random.default_rng(self.seed)
        rows = []
        for r in gt:
            f, oid = int(r[0]), int(r[1])
            o = by_id[oid]
            if f in o.missed:
                continue
            score = LOW_SCORE if f in o.low else HIGH_SCORE
            box = r[2:6] + (rng.normal(0, self.noise, 4) if self.noise else 0.0)
            rows.append([f, -1, *box, score, -1, -1, -1])
        return np.array(rows, dtype=np.float64).reshape(-1, 10)

    def render(self, frame: int, world: np.ndarray) -> np.ndarray:
        """The BGR image of ``frame``: the world texture seen from the camera, plus the objects."""
        cx, cy = self.camera(frame)
        ox, oy = round(cx) + _MARGIN, round(cy) + _MARGIN
        img = world[oy : oy + self.height, ox : ox + self.width].copy()
        for r in self.gt_rows_at(frame):
            x, y, w, h = (round(float(v)) for v in r[2:6])
            color = _color(int(r[1]))
            cv2.rectangle(img, (x, y), (x + w - 1, y + h - 1), color, thickness=-1)
            cv2.rectangle(img, (x, y), (x + w - 1, y + h - 1), (20, 20, 20), thickness=2)
        return img

    def gt_rows_at(self, frame: int) -> np.ndarray:
        gt = self.gt_rows()
        return gt[gt[:, 0] == frame]

    def world(self) -> np.ndarray:
        """Seeded background texture, large enough for every camera offset."""
        offs = np.array([self.camera(f) for f in range(1, self.length + 1)])
        w = self.width + int(np.ceil(offs[:, 0].max() - min(0, offs[:, 0].min()))) + 2 * _MARGIN
        h = self.height + int(np.ceil(offs[:, 1].max() - min(0, offs[:, 1].min()))) + 2 * _MARGIN
        rng = np.random.default_rng(self.seed + 1)
        noise = rng.integers(0, 256, (h // 4 + 1, w // 4 + 1), dtype=np.uint8)
        tex = cv2.resize(noise, (w, h), interpolation=cv2.INTER_LINEAR)
        tex = cv2.GaussianBlur(tex, (3, 3), 0)
        return cv2.cvtColor(tex, cv2.COLOR_GRAY2BGR)

    def write(self, root: Path, images: bool = False) -> Path:
        """Write ``root/<name>/`` as a MOT sequence; returns its folder."""
        d = root / self.name
        (d / "det").mkdir(parents=True, exist_ok=True)
        (d / "gt").mkdir(exist_ok=True)
        ini = configparser.ConfigParser()
        ini.optionxform = str  # type: ignore[assignment,method-assign]
        ini["Sequence"] = {
            "name": self.name,
            "imDir": "img1",
            "frameRate": str(self.fps),
            "seqLength": str(self.length),
            "imWidth": str(self.width),
            "imHeight": str(self.height),
            "imExt": ".png",
        }
        with (d / "seqinfo.ini").open("w") as f:
            ini.write(f)
        np.savetxt(d / "det" / "det.txt", self.det_rows(), delimiter=",", fmt="%.3f")
        np.savetxt(d / "gt" / "gt.txt", self.gt_rows(), delimiter=",", fmt="%.3f")
        if images:
            (d / "img1").mkdir(exist_ok=True)
            world = self.world()
            for fr in range(1, self.length + 1):
                cv2.imwrite(str(d / "img1" / f"{fr:06d}.png"), self.render(fr, world))
        return d


_MARGIN = 8


def _color(oid: int) -> tuple[int, int, int]:
    rng = np.random.default_rng(1000 + oid)
    c = rng.integers(60, 255, 3)
    return int(c[0]), int(c[1]), int(c[2])


# ---------------------------------------------------------------------- the scenes


def crossing() -> Scene:
    """Two pedestrians crossing head-on (8 px vertical offset), 3 px/frame each."""
    return Scene(
        "crossing",
        60,
        (Obj(1, 1, 60, 100, 140, 3.0, 0.0), Obj(2, 1, 60, 400, 148, -3.0, 0.0)),
    )


def occlusion(gap: int = 40) -> Scene:
    """One walker undetected for ``gap`` frames (21..20+gap), another always seen."""
    missed = frozenset(range(21, 21 + gap))
    return Scene(
        f"occlusion{gap}",
        20 + gap + 20,
        (
            Obj(1, 1, 20 + gap + 20, 20, 100, 3.0, 0.0, missed=missed),
            Obj(2, 1, 20 + gap + 20, 300, 250, 0.0, 0.0),
        ),
    )


def _pan(f: int) -> tuple[float, float]:
    # Still for 20 frames, then panning right at 5 px/frame.
    return (5.0 * max(0, f - 20), 0.0)


def pan() -> Scene:
    """Camera still for 20 frames, then pans 5 px/frame; detections drop out in frames 21..28.

    Three people stand still in the world, so in the image they slide left at
    5 px/frame once the pan starts; while undetected only camera-motion
    compensation can move their lost tracks along.
    """
    missed = frozenset(range(21, 29))
    objs = tuple(
        Obj(i + 1, 1, 50, 200 + 120 * i, 120 + 30 * i, 0.0, 0.0, w=24, h=56, missed=missed)
        for i in range(3)
    )
    return Scene("pan", 50, objs, camera=_pan)


def flicker() -> Scene:
    """Detections missed or low-score in known frames.

    Object 1 is missed in frames 10, 20-21 and 30 (three gaps); object 2 has
    low-score detections in frames 15-19 and 40-44; object 3 is clean.
    """
    o1 = Obj(1, 1, 50, 20, 40, 2.0, 0.5, missed=frozenset({10, 20, 21, 30}))
    o2 = Obj(2, 1, 50, 300, 200, -2.0, 0.0, low=frozenset([*range(15, 20), *range(40, 45)]))
    o3 = Obj(3, 1, 50, 400, 40, 0.0, 1.0)
    return Scene("flicker", 50, (o1, o2, o3))


#: Frames in which row 3 of :func:`crowd` is hidden behind row 2 (``occluded=True``).
OCCLUDED = frozenset(range(19, 24))


def crowd(n: int = 60, length: int = 60, occluded: bool = False) -> Scene:
    """``n`` walkers on a 10 x 6 grid, 1 px box noise; rows 2 and 3 cross through each other.

    The other rows stroll below 0.8 px/frame across and 0.5 px/frame down, so
    in 60 frames two neighbours close at most 96 px of their 110 px (across)
    and 60 px of their 70 px (down) gaps: they never touch.

    Rows 2 and 3 are two counter-moving files in a corridor: row 2 walks right
    at 2 px/frame at y = 400, row 3 walks left at 2 px/frame at y = 420,
    interleaved (row 3 starts 80 px right of row 2). Walker ``i`` of row 2
    passes walker ``i`` of row 3 head-on at frame 21 (boxes 20 px apart
    vertically: IoU 0.64 at full overlap) and meets walker ``i + 1`` at the
    end (boxes touching from frame 49, IoU 0.59 in the last two frames).
    Without the Kalman motion, IoU alone would swap most of them.

    With ``occluded``, row 3 is hidden behind row 2 while they overlap most
    (IoU >= 0.45, frames ``OCCLUDED`` = 19..23): undetected there, its tracks
    must coast through the crossing on their own motion.
    """
    rng = np.random.default_rng(7)
    objs = []
    for i in range(n):
        col, row = i % 10, i // 10
        v = rng.uniform([-0.8, -0.5], [0.8, 0.5])
        x, y = 40.0 + 150 * col, 40.0 + 160 * row
        if row == 2:
            y, v = 400.0, np.array([2.0, 0.0])
        elif row == 3:
            x, y, v = x + 80.0, 420.0, np.array([-2.0, 0.0])
        missed = OCCLUDED if occluded and row == 3 else frozenset()
        objs.append(Obj(i + 1, 1, length, x, y, float(v[0]), float(v[1]), 40, 90, missed))
    name = "crowd-occluded" if occluded else "crowd"
    return Scene(name, length, tuple(objs), width=1600, height=1040, noise=1.0, seed=3)
