"""Drawing detections on frames with supervision annotators (video and display sinks).

An :class:`Annotator` builds its supervision annotators once (one per sink)
and draws, on a copy of a BGR uint8 image: boxes, masks, keypoints with the
COCO-17 skeleton when there are 17 keypoints, and one label per detection::

    "#7 person 0.91"                      # track id, class name, confidence
    "#7 person 0.91 | carrying a bag"     # with the track's CLIP label
    "#7 person 0.91 | role: delivery worker 0.81 | carrying: bag 0.70"   # label groups

Colours follow the track id when the detections are tracked, else the class.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import supervision as sv
from supervision.key_points.skeletons import Skeleton

from edgewatch.types import DATA_KEYPOINTS, DATA_LABEL, DATA_LABEL_GROUPS

#: Keypoints whose confidence is below this are not drawn (Ultralytics' default).
KEYPOINT_MIN_CONF = 0.5
#: Keypoint count of the COCO person skeleton, drawn with its edges.
COCO_KEYPOINTS = 17


def detection_labels(detections: sv.Detections, class_names: Mapping[int, str]) -> list[str]:
    """One label text per detection: ``"#id class conf"`` plus ``" | label"`` when known,
    then ``" | group: label score"`` for each of the labeler's groups with a result.

    The id part is left out for untracked detections, the confidence when
    there is none; class ids without a name are shown as numbers.

    >>> d = sv.Detections(xyxy=np.zeros((2, 4), np.float32),
    ...                   confidence=np.array([0.914, 0.5], np.float32),
    ...                   class_id=np.array([0, 3]), tracker_id=np.array([7, -1]))
    >>> detection_labels(d, {0: "person"})
    ['#7 person 0.91', '3 0.50']
    """
    labels = detections.data.get(DATA_LABEL)
    groups = detections.data.get(DATA_LABEL_GROUPS)
    out: list[str] = []
    for i in range(len(detections)):
        parts: list[str] = []
        if detections.tracker_id is not None and int(detections.tracker_id[i]) >= 0:
            parts.append(f"#{int(detections.tracker_id[i])}")
        if detections.class_id is not None:
            cid = int(detections.class_id[i])
            parts.append(class_names.get(cid, str(cid)))
        if detections.confidence is not None:
            parts.append(f"{float(detections.confidence[i]):.2f}")
        text = " ".join(parts)
        if labels is not None and isinstance(labels[i], str) and labels[i]:
            text = f"{text} | {labels[i]}"
        if groups is not None and isinstance(groups[i], Mapping):
            text += "".join(_group_text(g, v) for g, v in groups[i].items())
        out.append(text)
    return out


def _group_text(group: object, value: object) -> str:
    """``" | group: label 0.81"`` for one ``(label, score)`` group result, "" for none."""
    if not isinstance(value, (tuple, list)) or len(value) != 2 or not value[0]:
        return ""
    label, score = value
    try:
        shown = f" {float(score):.2f}" if np.isfinite(float(score)) else ""
    except (TypeError, ValueError):
        shown = ""
    return f" | {group}: {label}{shown}"


def _color_lookup(detections: sv.Detections) -> np.ndarray:
    """Palette index per detection: the track id when tracked, else the class id."""
    if detections.tracker_id is not None:
        return np.maximum(np.asarray(detections.tracker_id, dtype=np.int64), 0)
    if detections.class_id is not None:
        return np.asarray(detections.class_id, dtype=np.int64)
    return np.arange(len(detections), dtype=np.int64)


def _key_points(detections: sv.Detections) -> sv.KeyPoints | None:
    kp = detections.data.get(DATA_KEYPOINTS)
    if kp is None or len(detections) == 0:
        return None
    kp = np.asarray(kp, dtype=np.float32)
    conf: np.ndarray = np.ascontiguousarray(kp[:, :, 2], dtype=np.float32)
    return sv.KeyPoints(
        xy=np.ascontiguousarray(kp[:, :, :2]),
        keypoint_confidence=conf,
        visible=conf >= KEYPOINT_MIN_CONF,
    )


class Annotator:
    """Draws detections; build one per sink and call :meth:`annotate` per frame.

    ``draw_labels`` turns the text labels off; ``thickness`` is the box line
    width in pixels and ``text_scale`` the OpenCV font scale.
    """

    def __init__(
        self, *, draw_labels: bool = True, thickness: int = 2, text_scale: float = 0.5
    ) -> None:
        self.draw_labels = draw_labels
        self._box = sv.BoxAnnotator(thickness=thickness)
        self._mask = sv.MaskAnnotator(opacity=0.4)
        self._label = sv.LabelAnnotator(text_scale=text_scale, text_padding=4, smart_position=True)
        self._coco_edges = sv.EdgeAnnotator(thickness=thickness, edges=list(Skeleton.COCO.value))
        self._vertices = sv.VertexAnnotator(radius=max(2, thickness + 1))

    def annotate(
        self, image: np.ndarray, detections: sv.Detections, class_names: Mapping[int, str]
    ) -> np.ndarray:
        """A copy of ``image`` (HxWx3 BGR uint8) with ``detections`` drawn on it.

        Boxes are xyxy in the image's pixels; the input image is not modified.
        """
        scene = image.copy()
        if len(detections) == 0:
            return scene
        colors = _color_lookup(detections)
        if detections.mask is not None:
            scene = self._mask.annotate(scene, detections, custom_color_lookup=colors)
        scene = self._box.annotate(scene, detections, custom_color_lookup=colors)
        key_points = _key_points(detections)
        if key_points is not None:
            if key_points.xy.shape[1] == COCO_KEYPOINTS:
                scene = self._coco_edges.annotate(scene, key_points)
            scene = self._vertices.annotate(scene, key_points)
        if self.draw_labels:
            scene = self._label.annotate(
                scene,
                detections,
                labels=detection_labels(detections, class_names),
                custom_color_lookup=colors,
            )
        return scene
