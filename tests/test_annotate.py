"""Annotations: label texts, and where boxes, masks, skeletons and labels are drawn."""

from __future__ import annotations

import numpy as np
import pytest
import supervision as sv

from edgewatch.annotate import Annotator, detection_labels
from edgewatch.types import DATA_KEYPOINTS, DATA_LABEL, DATA_LABEL_GROUPS

NAMES = {0: "person", 1: "car"}
EDGE_BGR = sv.Color(r=163, g=81, b=251).as_bgr()  # supervision's default skeleton colour


def _det(n: int = 1, **kw: object) -> sv.Detections:
    base: dict[str, object] = {
        "xyxy": np.tile(np.array([[50, 60, 150, 160]], np.float32), (n, 1)),
        "confidence": np.full(n, 0.876, np.float32),
        "class_id": np.zeros(n, int),
        "tracker_id": np.arange(3, 3 + n),
    }
    base.update(kw)
    return sv.Detections(**base)  # type: ignore[arg-type]


def _groups(*rows: dict[str, tuple[str, float]]) -> np.ndarray:
    """The labeler's ``DATA_LABEL_GROUPS`` column: one ``{group: (label, score)}`` per row."""
    out = np.empty(len(rows), dtype=object)
    for i, row in enumerate(rows):
        out[i] = row
    return out


@pytest.mark.parametrize(
    ("kw", "expected"),
    [
        ({}, ["#3 person 0.88"]),
        ({"tracker_id": None}, ["person 0.88"]),
        ({"tracker_id": np.array([-1])}, ["person 0.88"]),
        ({"confidence": None}, ["#3 person"]),
        ({"class_id": np.array([9])}, ["#3 9 0.88"]),
        ({"data": {DATA_LABEL: np.array(["delivery worker"], dtype=object)}},
         ["#3 person 0.88 | delivery worker"]),
        ({"data": {DATA_LABEL: np.array([None], dtype=object)}}, ["#3 person 0.88"]),
        ({"data": {DATA_LABEL: np.array([""], dtype=object)}}, ["#3 person 0.88"]),
        ({"data": {DATA_LABEL_GROUPS: _groups({"role": ("delivery worker", 0.8123),
                                                "carrying": ("bag", 0.7)})}},
         ["#3 person 0.88 | role: delivery worker 0.81 | carrying: bag 0.70"]),
        ({"data": {DATA_LABEL: np.array(["pedestrian"], dtype=object),
                   DATA_LABEL_GROUPS: _groups({"role": ("unknown", 0.25)})}},
         ["#3 person 0.88 | pedestrian | role: unknown 0.25"]),
        ({"data": {DATA_LABEL_GROUPS: _groups({"role": ("", float("nan")),
                                                "carrying": ("bag", float("nan"))})}},
         ["#3 person 0.88 | carrying: bag"]),
        ({"data": {DATA_LABEL_GROUPS: _groups({})}}, ["#3 person 0.88"]),
    ],
)
def test_detection_labels(kw: dict, expected: list[str]) -> None:
    assert detection_labels(_det(**kw), NAMES) == expected


def test_input_untouched_and_empty_is_a_copy() -> None:
    img = np.full((200, 200, 3), 7, np.uint8)
    a = Annotator()
    out = a.annotate(img, _det(), NAMES)
    assert (img == 7).all() and out.shape == img.shape and not (out == 7).all()
    empty = a.annotate(img, sv.Detections.empty(), NAMES)
    assert empty is not img and (empty == img).all()


@pytest.mark.parametrize("tracker_id", [3, 4, 25])
def test_box_colour_follows_track(tracker_id: int) -> None:
    img = np.zeros((200, 200, 3), np.uint8)
    out = Annotator().annotate(img, _det(tracker_id=np.array([tracker_id])), NAMES)
    want = sv.ColorPalette.DEFAULT.by_idx(tracker_id).as_bgr()
    assert tuple(out[100, 50]) == want and tuple(out[100, 150]) == want
    assert tuple(out[110, 100]) == (0, 0, 0)  # inside the box, no mask: untouched


@pytest.mark.parametrize(("draw_labels", "label_pixels"), [(True, True), (False, False)])
def test_label_toggle(draw_labels: bool, label_pixels: bool) -> None:
    out = Annotator(draw_labels=draw_labels).annotate(np.zeros((200, 200, 3), np.uint8),
                                                      _det(), NAMES)
    assert bool(out[30:58, 50:150].any()) is label_pixels


def test_mask_is_blended_inside_only() -> None:
    mask = np.zeros((1, 200, 200), bool)
    mask[0, 80:140, 70:130] = True
    out = Annotator(draw_labels=False).annotate(np.zeros((200, 200, 3), np.uint8),
                                                _det(mask=mask), NAMES)
    colour = np.array(sv.ColorPalette.DEFAULT.by_idx(3).as_bgr(), float)
    assert np.abs(out[110, 100] - 0.4 * colour).max() <= 1
    assert tuple(out[150, 140]) == (0, 0, 0)


@pytest.mark.parametrize(("k", "edge_drawn"), [(17, True), (5, False)])
def test_skeleton_only_for_coco17(k: int, edge_drawn: bool) -> None:
    kp = np.zeros((1, k, 3), np.float32)
    kp[0, :, :2] = 10.0
    kp[0, 3] = (80, 120, 0.9)  # with k == 17 the COCO edge (6, 7) is 1-based: 0-based 5, 6
    kp[0, 4] = (120, 120, 0.9)
    if k == 17:
        kp[0, 3, 2] = kp[0, 4, 2] = 0.0
        kp[0, 5] = (80, 120, 0.9)
        kp[0, 6] = (120, 120, 0.9)
    out = Annotator(draw_labels=False).annotate(
        np.zeros((200, 200, 3), np.uint8), _det(data={DATA_KEYPOINTS: kp}), NAMES
    )
    assert tuple(out[120, 80]) == EDGE_BGR and tuple(out[120, 120]) == EDGE_BGR  # vertices
    assert (tuple(out[120, 100]) == EDGE_BGR) is edge_drawn
    assert tuple(out[10, 10]) == (0, 0, 0)  # invisible (confidence 0) points are not drawn


def test_group_labels_are_drawn() -> None:
    """The drawn label of a grouped track carries both groups: a longer text, wider strip."""
    img = np.zeros((300, 900, 3), np.uint8)
    plain = _det(data={DATA_LABEL: np.array(["pedestrian"], dtype=object)})
    grouped = _det(data={
        DATA_LABEL: np.array(["pedestrian"], dtype=object),
        DATA_LABEL_GROUPS: _groups({"role": ("delivery worker", 0.81), "carrying": ("bag", 0.7)}),
    })
    strips = []
    for det in (plain, grouped):
        out = Annotator().annotate(img, det, NAMES)
        strip = out[30:58].any(axis=(0, 2))  # the label row above the box (y 60..160)
        strips.append(np.flatnonzero(strip))
    (p, g) = strips
    assert p.size and g.size and p.min() == g.min() == 50  # both start at the box's left edge
    assert g.max() > p.max() + 150  # the grouped label runs much further right
