"""Global (camera) motion compensation, as BoT-SORT's ``GMC``.

:meth:`GMC.apply` takes consecutive BGR frames and returns the ``2x3`` affine
that maps pixel coordinates of the previous frame onto the current one
(full-resolution pixels, whatever the downscale). Methods:

``sparseOptFlow``
    ``goodFeaturesToTrack`` corners, tracked with ``calcOpticalFlowPyrLK``,
    fitted with ``estimateAffinePartial2D`` (RANSAC). Unlike BoT-SORT, which
    detects 1000 corners on every frame, the RANSAC inliers are carried to
    the next frame (KLT) and 200 corners are re-detected (at half the working
    size) only every 10 frames or when fewer than 100 survive: ~2 ms instead
    of ~25 ms per 1080p frame on a 2-core CPU.
``orb`` / ``sift``
    keypoints matched between frames (ratio test), same affine fit.
``ecc``
    ``findTransformECC`` with a Euclidean motion model.
``none``
    always the identity.

Detections (``(N, 4)`` xyxy pixels) are masked out of the feature search, so
moving objects do not vote for the camera motion. When a fit fails the
identity is returned, a rate-limited warning is logged and the
``edgewatch_fallbacks_total{stage="gmc"}`` counter grows.
"""

from __future__ import annotations

import logging
import time

import cv2
import numpy as np

from edgewatch.config import GmcMethod
from edgewatch.metrics import Metrics

log = logging.getLogger(__name__)

_WARN_EVERY_S = 10.0
_MIN_POINTS = 5
#: sparseOptFlow: corners searched, re-detection period (frames) and the fewest carried points.
MAX_CORNERS = 200
REDETECT_EVERY = 10
MIN_CARRIED = 100
#: sparseOptFlow: corner search runs at half size above this width (pixels, after downscale).
CORNER_WIDTH = 640


def _inside(pts: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Which ``(N, 2)`` points (x, y) fall on non-zero ``mask`` pixels."""
    h, w = mask.shape
    xi = np.clip(pts[:, 0].astype(np.int64), 0, w - 1)
    yi = np.clip(pts[:, 1].astype(np.int64), 0, h - 1)
    inside = (pts[:, 0] >= 0) & (pts[:, 0] < w) & (pts[:, 1] >= 0) & (pts[:, 1] < h)
    return inside & (mask[yi, xi] > 0)


def identity() -> np.ndarray:
    """The ``2x3`` identity affine (float64)."""
    return np.eye(2, 3)


class GMC:
    """Camera-motion estimator with the state of the previous frame.

    ``downscale`` divides the frame size before the search (2 = half size).
    """

    def __init__(
        self,
        method: GmcMethod | str = GmcMethod.SPARSE_OPT_FLOW,
        downscale: int = 2,
        metrics: Metrics | None = None,
        source: str = "",
    ) -> None:
        self.method = GmcMethod(method)
        self.downscale = max(1, int(downscale))
        self.failures = 0
        self._metrics = metrics
        self._source = source
        self._last_warn = -np.inf
        self._prev: np.ndarray | None = None
        self._prev_pts: np.ndarray | None = None
        self._age = 0
        self._prev_kp: tuple[tuple[cv2.KeyPoint, ...], np.ndarray | None] | None = None
        self._detector: cv2.Feature2D | None = None
        self._matcher: cv2.DescriptorMatcher | None = None
        if self.method is GmcMethod.ORB:
            self._detector = cv2.ORB.create(nfeatures=1000)
            self._matcher = cv2.BFMatcher(cv2.NORM_HAMMING)
        elif self.method is GmcMethod.SIFT:
            self._detector = cv2.SIFT.create(nfeatures=1000)
            self._matcher = cv2.BFMatcher(cv2.NORM_L2)

    def reset(self) -> None:
        """Forget the previous frame (the next call returns the identity)."""
        self._prev = None
        self._prev_pts = None
        self._prev_kp = None
        self._age = 0

    def apply(
        self, frame_bgr: np.ndarray | None, detections_xyxy: np.ndarray | None = None
    ) -> np.ndarray:
        """Affine ``2x3`` (float64) from the previous frame to this one; identity on the first."""
        if self.method is GmcMethod.NONE or frame_bgr is None:
            return identity()
        gray, mask = self._prepare(frame_bgr, detections_xyxy)
        if self._prev is not None and self._prev.shape != gray.shape:
            self.reset()
        if self.method is GmcMethod.SPARSE_OPT_FLOW:
            affine = self._sparse_flow(gray, mask)
        elif self.method is GmcMethod.ECC:
            affine = self._ecc(gray, mask)
        else:
            affine = self._features(gray, mask)
        self._prev = gray
        if affine is None:
            return identity()
        affine[:, 2] *= self.downscale
        return affine

    # ------------------------------------------------------------------ helpers

    def _prepare(self, frame: np.ndarray, dets: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        h, w = frame.shape[:2]
        small = frame
        if self.downscale > 1:
            small = cv2.resize(
                frame, (w // self.downscale, h // self.downscale), interpolation=cv2.INTER_AREA
            )
        gray = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY) if small.ndim == 3 else small
        gh, gw = gray.shape
        mask = np.zeros_like(gray)
        mask[int(0.02 * gh) : int(0.98 * gh), int(0.02 * gw) : int(0.98 * gw)] = 255
        if dets is not None and len(dets):
            boxes = np.asarray(dets, dtype=np.float64).reshape(-1, 4) / self.downscale
            boxes = np.round(boxes).astype(np.int64)
            boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, gw)
            boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, gh)
            for x1, y1, x2, y2 in boxes:
                mask[y1:y2, x1:x2] = 0
        return gray, mask

    def _fail(self, why: str) -> None:
        self.failures += 1
        if self._metrics is not None:
            self._metrics.inc("edgewatch_fallbacks_total", source=self._source, stage="gmc")
        now = time.monotonic()
        if now - self._last_warn >= _WARN_EVERY_S:
            self._last_warn = now
            log.warning(
                "camera motion (%s) failed: %s; using identity (%d failures so far)",
                self.method.value,
                why,
                self.failures,
            )

    def _fit(self, prev_pts: np.ndarray, curr_pts: np.ndarray) -> np.ndarray | None:
        return self._fit_inliers(prev_pts, curr_pts)[0]

    def _fit_inliers(
        self, prev_pts: np.ndarray, curr_pts: np.ndarray
    ) -> tuple[np.ndarray | None, np.ndarray | None]:
        """RANSAC partial-affine fit; ``(affine 2x3 or None, inlier mask or None)``."""
        if len(prev_pts) < _MIN_POINTS:
            self._fail(f"only {len(prev_pts)} point pairs")
            return None, None
        affine, inliers = cv2.estimateAffinePartial2D(prev_pts, curr_pts, method=cv2.RANSAC)
        if affine is None or inliers is None:
            self._fail("affine fit did not converge")
            return None, None
        return affine.astype(np.float64), inliers.reshape(-1).astype(bool)

    def _sparse_flow(self, gray: np.ndarray, mask: np.ndarray) -> np.ndarray | None:
        """KLT: track last frame's points into this one, fit, keep the inliers for the next frame.

        Corners are re-detected (``goodFeaturesToTrack``) on the first frame,
        every ``REDETECT_EVERY`` frames, and whenever fewer than
        ``MIN_CARRIED`` inliers survive; in between, points are carried, which
        keeps the per-frame cost at one pyramidal Lucas-Kanade pass.
        """
        prev, prev_pts = self._prev, self._prev_pts
        self._age += 1
        if prev is None or prev_pts is None or len(prev_pts) < _MIN_POINTS:
            self._prev_pts = self._corners(gray, mask)
            if prev is not None:
                self._fail("too few corners in the previous frame")
                return None
            return identity()
        curr, status, _ = cv2.calcOpticalFlowPyrLK(
            prev, gray, prev_pts, None, winSize=(11, 11), maxLevel=3
        )
        ok = status.reshape(-1).astype(bool)
        a, b = prev_pts.reshape(-1, 2)[ok], curr.reshape(-1, 2)[ok]
        affine, inliers = self._fit_inliers(a, b)
        carried = b[inliers] if inliers is not None else b[:0]
        carried = carried[_inside(carried, mask)]
        if len(carried) < MIN_CARRIED or self._age % REDETECT_EVERY == 0:
            self._prev_pts = self._corners(gray, mask)
        else:
            self._prev_pts = carried.reshape(-1, 1, 2).astype(np.float32)
        return affine

    def _corners(self, gray: np.ndarray, mask: np.ndarray) -> np.ndarray | None:
        """Up to ``MAX_CORNERS`` corners, ``(N, 1, 2)`` float32 in ``gray`` pixels.

        Images wider than ``CORNER_WIDTH`` are searched at half size (the corner
        response is the costly part; LK refines the points at full size anyway).
        """
        f = 2 if gray.shape[1] > CORNER_WIDTH else 1
        if f > 1:
            small = cv2.pyrDown(gray)
            mask = cv2.resize(
                mask, (small.shape[1], small.shape[0]), interpolation=cv2.INTER_NEAREST
            )
        else:
            small = gray
        pts = cv2.goodFeaturesToTrack(
            small,
            maxCorners=MAX_CORNERS,
            qualityLevel=0.01,
            minDistance=8 / f,
            blockSize=3,
            mask=mask,
        )
        return None if pts is None else (pts * f).astype(np.float32)

    def _features(self, gray: np.ndarray, mask: np.ndarray) -> np.ndarray | None:
        if self._detector is None or self._matcher is None:
            raise AssertionError("feature GMC without a detector")
        kp, desc = self._detector.detectAndCompute(gray, mask)
        prev = self._prev_kp
        self._prev_kp = (tuple(kp), desc)
        if prev is None or self._prev is None:
            return identity()
        prev_kp, prev_desc = prev
        if prev_desc is None or desc is None or len(prev_kp) < 2 or len(kp) < 2:
            self._fail("too few keypoints")
            return None
        pairs = self._matcher.knnMatch(prev_desc, desc, k=2)
        good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < 0.9 * p[1].distance]
        a = np.array([prev_kp[g.queryIdx].pt for g in good], dtype=np.float32).reshape(-1, 2)
        b = np.array([kp[g.trainIdx].pt for g in good], dtype=np.float32).reshape(-1, 2)
        return self._fit(a, b)

    def _ecc(self, gray: np.ndarray, mask: np.ndarray) -> np.ndarray | None:
        """Euclidean ECC on the unmasked pixels, coarse to fine (quarter size, then full)."""
        if self._prev is None:
            return identity()
        warp = np.eye(2, 3, dtype=np.float32)
        criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 100, 1e-5)
        for scale in (4, 1):
            h, w = gray.shape[0] // scale, gray.shape[1] // scale
            if min(h, w) < 32:
                continue
            if scale > 1:
                prev = cv2.resize(self._prev, (w, h), interpolation=cv2.INTER_AREA)
                curr = cv2.resize(gray, (w, h), interpolation=cv2.INTER_AREA)
                valid = cv2.resize(mask, (w, h), interpolation=cv2.INTER_NEAREST)
            else:
                prev, curr, valid = self._prev, gray, mask
            guess = warp.copy()
            guess[:, 2] /= scale
            try:
                _, found = cv2.findTransformECC(
                    prev, curr, guess, cv2.MOTION_EUCLIDEAN, criteria, valid, 5
                )
            except cv2.error as e:
                self._fail(f"ECC did not converge ({e.err})")
                return None
            warp = np.asarray(found, dtype=np.float32)
            warp[:, 2] *= scale
        # I_curr(W x) = I_prev(x): W maps previous-frame pixels onto the current frame.
        return warp.astype(np.float64)
