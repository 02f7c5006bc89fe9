"""A small ONNX appearance (ReID) embedder for BoT-SORT.

The model takes ``(B, 3, H, W)`` float32 RGB crops normalised with the
ImageNet mean and std (``(x / 255 - mean) / std``) and returns ``(B, D)``
(any trailing dimensions are flattened). ``H, W`` come from the model's input
shape; where they are symbolic, 256x128 (height x width, the usual person-ReID
size) is used. A fixed batch dimension of 1 is honoured by running crops one
at a time.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from edgewatch.errors import ModelError
from edgewatch.metrics import Metrics

if TYPE_CHECKING:
    import onnxruntime as ort

log = logging.getLogger(__name__)

_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
DEFAULT_HW = (256, 128)


class OnnxReid:
    """Embeds detection crops; the session opens on :meth:`load` (or the first :meth:`embed`)."""

    def __init__(
        self, model: str | Path, metrics: Metrics | None = None, device: str = "auto"
    ) -> None:
        self.path = Path(model)
        self.metrics = metrics
        self.device = device
        self._session: ort.InferenceSession | None = None
        self._input = ""
        self._hw = DEFAULT_HW
        self._batch_one = False

    def load(self) -> OnnxReid:
        """Open the ONNX session; raises :class:`ModelError` if the file is missing or unusable."""
        from edgewatch.pipeline.models.onnx import create_session

        if not self.path.is_file():
            raise ModelError(f"ReID model not found: {self.path}")
        sess = create_session(self.path, self.device, metrics=self.metrics, stage="reid")
        inp = sess.get_inputs()[0]
        shape = list(inp.shape)
        if len(shape) != 4 or shape[1] not in (3, "3"):
            raise ModelError(
                f"ReID model {self.path}: input {inp.name} {shape} is not (B, 3, H, W)"
            )
        h, w = shape[2], shape[3]
        if isinstance(h, int) and isinstance(w, int):
            self._hw = (h, w)
        self._batch_one = shape[0] == 1
        self._input = inp.name
        self._session = sess
        log.info("ReID model %s: input %s, crops %dx%d", self.path, shape, self._hw[1], self._hw[0])
        return self

    def preprocess(self, image_bgr: np.ndarray, xyxy: np.ndarray) -> np.ndarray:
        """Crops of ``xyxy`` (pixels, clipped to the image) -> ``(N, 3, H, W)`` float32."""
        h_img, w_img = image_bgr.shape[:2]
        out = np.empty((len(xyxy), 3, *self._hw), dtype=np.float32)
        for i, box in enumerate(np.asarray(xyxy, dtype=np.float64).reshape(-1, 4)):
            x1, y1 = (
                int(np.clip(np.floor(box[0]), 0, w_img - 1)),
                int(np.clip(np.floor(box[1]), 0, h_img - 1)),
            )
            x2, y2 = (
                int(np.clip(np.ceil(box[2]), x1 + 1, w_img)),
                int(np.clip(np.ceil(box[3]), y1 + 1, h_img)),
            )
            crop = cv2.resize(image_bgr[y1:y2, x1:x2], (self._hw[1], self._hw[0]))
            rgb = crop[:, :, ::-1].astype(np.float32) / 255.0
            out[i] = ((rgb - _MEAN) / _STD).transpose(2, 0, 1)
        return out

    def embed(self, image_bgr: np.ndarray, xyxy: np.ndarray) -> np.ndarray:
        """``(N, D)`` float32 L2-normalised embeddings of the boxes ``xyxy`` (pixels)."""
        session = self._session if self._session is not None else self.load()._session
        if session is None:
            raise ModelError(f"ReID model {self.path} did not load")
        if len(xyxy) == 0:
            return np.zeros((0, 0), dtype=np.float32)
        batch = self.preprocess(image_bgr, xyxy)
        run = session.run
        if self._batch_one:
            feats = np.concatenate(
                [run(None, {self._input: batch[i : i + 1]})[0] for i in range(len(batch))]
            )
        else:
            feats = run(None, {self._input: batch})[0]
        feats = np.asarray(feats, dtype=np.float32).reshape(len(batch), -1)
        norm = np.linalg.norm(feats, axis=1, keepdims=True)
        return feats / np.maximum(norm, 1e-12)
