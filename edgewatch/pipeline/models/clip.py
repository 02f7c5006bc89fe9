"""CLIP image and text encoders as two ONNX files, with the reference preprocessing.

A CLIP model directory holds an image encoder, a text encoder and tokenizer
files (see :mod:`edgewatch.pipeline.models.clip_tokenizer`). Layouts found in
the wild are recognised (:data:`VISION_FILES` / :data:`TEXT_FILES`): OpenCLIP /
clip-as-service (``visual.onnx``, ``textual.onnx``), Immich
(``visual/model.onnx``, ``textual/model.onnx``), Hugging Face / transformers.js
(``onnx/vision_model.onnx``, ``onnx/text_model.onnx``) and others.

* Input resolution S comes from the image encoder's input shape (224, 336, ...);
  a dynamic shape falls back to the directory's JSON files (``clip.json``
  ``image_size``, ``preprocessor_config.json``, ``config.json``), then 224.
* Embedding width comes from the encoders' outputs; an output whose name ends
  in ``embeds`` (``image_embeds``, ``text_embeds``) is preferred, else the first
  2-D output. Both widths must agree.
* The logit scale (a plain multiplier, 100 for OpenAI's weights) comes, first
  found wins, from: the caller (``labeler.logit_scale``); ``clip.json``'s
  ``logit_scale``; the ONNX metadata key ``logit_scale`` of the image, then the
  text encoder (a plain multiplier); else 100. A Hugging Face ``config.json``'s
  ``logit_scale_init_value`` is deliberately *not* read: it is the value
  training started from (2.6592, scale 14.3, in OpenAI's released configs),
  never the trained scale (100 for OpenAI's weights), so using it would
  flatten every score.
* Mean/std come from ``preprocessor_config.json`` (``image_mean``/``image_std``)
  when present, else OpenAI's values.

Preprocessing (:func:`preprocess`) equals Hugging Face's ``CLIPImageProcessor``
(PIL backend), which is OpenAI's pipeline up to the centre-crop offset
rounding (floor here, banker's rounding in torchvision): RGB; Pillow bicubic
resize of the short side to S (long side ``int(S * long / short)``, Pillow
antialiases when shrinking); centre crop SxS; ``/255``; ``(x - mean) / std``.
``crop_mode="pad"`` instead pads the crop to a square with the mean colour
(centred, floor offsets) and resizes that square to SxS.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from edgewatch.config import CropMode
from edgewatch.errors import ModelError
from edgewatch.pipeline.models.clip_tokenizer import ClipTokenizer
from edgewatch.pipeline.models.onnx import ORT_ERRORS, create_session

if TYPE_CHECKING:
    import onnxruntime as ort

    from edgewatch.metrics import Metrics

log = logging.getLogger(__name__)

#: OpenAI CLIP's normalisation constants (RGB, for pixel values in [0, 1]).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
DEFAULT_IMAGE_SIZE = 224
DEFAULT_LOGIT_SCALE = 100.0

#: Image encoder file names looked up in a model directory, in order.
VISION_FILES = (
    "visual.onnx",
    "image_encoder.onnx",
    "vision_model.onnx",
    "clip_image_encoder.onnx",
    "visual/model.onnx",
    "onnx/vision_model.onnx",
    "image.onnx",
)
#: Text encoder file names, in the same order as :data:`VISION_FILES`.
TEXT_FILES = (
    "textual.onnx",
    "text_encoder.onnx",
    "text_model.onnx",
    "clip_text_encoder.onnx",
    "textual/model.onnx",
    "onnx/text_model.onnx",
    "text.onnx",
)


@dataclass(frozen=True)
class ClipFiles:
    """Where a CLIP model directory keeps its parts."""

    vision: Path
    text: Path
    root: Path


def find_clip_files(model_dir: str | Path) -> ClipFiles:
    """Locate both encoders in ``model_dir``; :class:`ModelError` lists the names tried."""
    root = Path(model_dir)
    if not root.is_dir():
        raise ModelError(f"CLIP model directory not found: {root}")
    vision = next((root / n for n in VISION_FILES if (root / n).is_file()), None)
    text = next((root / n for n in TEXT_FILES if (root / n).is_file()), None)
    if vision is None:
        raise ModelError(
            f"no CLIP image encoder in {root}: expected one of {', '.join(VISION_FILES)}"
        )
    if text is None:
        raise ModelError(f"no CLIP text encoder in {root}: expected one of {', '.join(TEXT_FILES)}")
    return ClipFiles(vision=vision, text=text, root=root)


# --------------------------------------------------------------------------- preprocessing


def _resize_bicubic(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """Pillow's bicubic resize (antialiased when shrinking) of an HxWx3 uint8 image."""
    return np.asarray(Image.fromarray(rgb).resize((width, height), Image.Resampling.BICUBIC))


def _pad_square(rgb: np.ndarray, fill: tuple[int, int, int]) -> np.ndarray:
    h, w = rgb.shape[:2]
    side = max(h, w)
    out = np.empty((side, side, 3), dtype=np.uint8)
    out[...] = fill
    top, left = (side - h) // 2, (side - w) // 2
    out[top : top + h, left : left + w] = rgb
    return out


def preprocess(
    bgr: np.ndarray,
    size: int,
    mode: CropMode | str = CropMode.CENTER,
    mean: Sequence[float] = CLIP_MEAN,
    std: Sequence[float] = CLIP_STD,
) -> np.ndarray:
    """``(3, size, size)`` float32 CHW input for the image encoder from an HxWx3 BGR uint8 crop."""
    if bgr.ndim != 3 or bgr.shape[2] != 3 or bgr.shape[0] < 1 or bgr.shape[1] < 1:
        raise ValueError(f"CLIP crop must be HxWx3 with H, W >= 1, got shape {bgr.shape}")
    rgb = np.ascontiguousarray(bgr[:, :, ::-1], dtype=np.uint8)
    if CropMode(mode) is CropMode.PAD:
        r, g, b = (round(m * 255) for m in mean)
        img = _resize_bicubic(_pad_square(rgb, (r, g, b)), size, size)
    else:
        h, w = rgb.shape[:2]
        if w <= h:
            new_w, new_h = size, int(size * h / w)
        else:
            new_w, new_h = int(size * w / h), size
        img = _resize_bicubic(rgb, new_w, new_h)
        top, left = (new_h - size) // 2, (new_w - size) // 2
        img = img[top : top + size, left : left + size]
    scaled = img.astype(np.float32) * np.float32(1 / 255)
    x: np.ndarray = (scaled - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def l2_normalize(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """``x / ||x||`` along ``axis`` (float32); all-zero rows stay zero."""
    x = np.asarray(x, dtype=np.float32)
    n = np.linalg.norm(x, axis=axis, keepdims=True)
    return np.divide(x, n, out=np.zeros_like(x), where=n > 0)


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax (float32)."""
    z = logits - logits.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=axis, keepdims=True)).astype(np.float32)


# --------------------------------------------------------------------------- sessions


def _create_session(
    path: Path, device: str, threads: int, metrics: Metrics | None
) -> ort.InferenceSession:
    """An ORT session on ``device`` through the shared helper (fallbacks logged and counted)."""
    return create_session(
        path, device, metrics=metrics, stage="labeler", intra_op_num_threads=threads or None
    )


def _embed_output(session: ort.InferenceSession, path: Path) -> tuple[str, int | None]:
    """Name and width of the encoder output that carries the embedding."""
    outs = session.get_outputs()
    chosen = next((o for o in outs if o.name.endswith("embeds")), None)
    chosen = chosen or next((o for o in outs if len(o.shape) == 2), None)
    if chosen is None:
        raise ModelError(f"{path}: no 2-D embedding output among {[o.name for o in outs]}")
    width = chosen.shape[-1]
    return chosen.name, width if isinstance(width, int) else None


def _fixed_batch(shape: Sequence[object]) -> int | None:
    return shape[0] if shape and isinstance(shape[0], int) and shape[0] > 0 else None


def _read_json_opt(path: Path) -> dict[str, object]:
    if not path.is_file():
        return {}
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ModelError(f"cannot read {path}: {e}") from e
    return doc if isinstance(doc, dict) else {}


# --------------------------------------------------------------------------- model


class ClipModel:
    """Both CLIP encoders and the tokenizer, loaded by :meth:`load`.

    Embeddings returned by :meth:`encode_images` / :meth:`encode_text` are
    ``(N, D)`` float32, L2-normalised. :meth:`zero_shot` gives the softmax of
    ``logit_scale * cos`` between images and text embeddings.
    """

    def __init__(
        self,
        files: ClipFiles,
        vision: ort.InferenceSession,
        text: ort.InferenceSession,
        tokenizer: ClipTokenizer,
        logit_scale: float,
        crop_mode: CropMode,
        mean: Sequence[float] = CLIP_MEAN,
        std: Sequence[float] = CLIP_STD,
    ) -> None:
        self.files = files
        self.tokenizer = tokenizer
        self.logit_scale = float(logit_scale)
        self.crop_mode = CropMode(crop_mode)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self._vision, self._text = vision, text
        vin = vision.get_inputs()[0]
        self._vision_input = vin.name
        self._vision_dtype = np.float16 if "float16" in vin.type else np.float32
        self._vision_batch = _fixed_batch(vin.shape)
        self.image_size = _image_size(vin.shape, files.root)
        self._vision_output, vdim = _embed_output(vision, files.vision)
        self._text_output, tdim = _embed_output(text, files.text)
        names = [i.name for i in text.get_inputs()]
        self._ids_input = next(
            (n for n in names if "input_ids" in n or n in ("text", "input")), names[0]
        )
        self._mask_input = next((n for n in names if "mask" in n), None)
        ids_meta = next(i for i in text.get_inputs() if i.name == self._ids_input)
        self._ids_dtype = np.int32 if ids_meta.type == "tensor(int32)" else np.int64
        self._text_batch = _fixed_batch(ids_meta.shape)
        self.embed_dim = self._check_widths(vdim, tdim)

    @classmethod
    def load(
        cls,
        model_dir: str | Path,
        device: str = "auto",
        intra_op_num_threads: int = 0,
        metrics: Metrics | None = None,
        logit_scale: float | None = None,
        crop_mode: CropMode | str = CropMode.CENTER,
    ) -> ClipModel:
        """Open the encoders and tokenizer in ``model_dir``; :class:`ModelError` on any problem."""
        files = find_clip_files(model_dir)
        tokenizer = ClipTokenizer.from_dir(files.root)
        vision = _create_session(files.vision, device, intra_op_num_threads, metrics)
        text = _create_session(files.text, device, intra_op_num_threads, metrics)
        pre = _read_json_opt(files.root / "preprocessor_config.json")
        scale, scale_source = (
            (_check_scale(logit_scale, "labeler.logit_scale"), "labeler.logit_scale")
            if logit_scale is not None
            else _model_logit_scale(files, vision, text)
        )
        model = cls(
            files,
            vision,
            text,
            tokenizer,
            scale,
            CropMode(crop_mode),
            mean=_triple(pre.get("image_mean"), CLIP_MEAN),
            std=_triple(pre.get("image_std"), CLIP_STD),
        )
        log.info(
            "CLIP loaded from %s: image %dx%d, embedding %d, logit scale %.4g (%s), crop %s",
            files.root,
            model.image_size,
            model.image_size,
            model.embed_dim,
            model.logit_scale,
            scale_source,
            model.crop_mode.value,
        )
        return model

    def _check_widths(self, vdim: int | None, tdim: int | None) -> int:
        if vdim is None:
            vdim = int(
                self._run_vision(
                    np.zeros((1, 3, self.image_size, self.image_size), np.float32)
                ).shape[1]
            )
        if tdim is None:
            tdim = int(self._run_text(self.tokenizer([""])).shape[1])
        if vdim != tdim:
            raise ModelError(
                f"CLIP encoders disagree: image embedding width {vdim} ({self.files.vision.name}) "
                f"!= text embedding width {tdim} ({self.files.text.name})"
            )
        return vdim

    # ------------------------------------------------------------------ running

    def _run_vision(self, batch: np.ndarray) -> np.ndarray:
        outs = []
        step = self._vision_batch or len(batch)
        for i in range(0, len(batch), step):
            x = batch[i : i + step].astype(self._vision_dtype, copy=False)
            try:
                (y,) = self._vision.run([self._vision_output], {self._vision_input: x})
            except ORT_ERRORS as e:
                raise ModelError(f"{self.files.vision.name}: inference failed: {e}") from e
            outs.append(np.asarray(y, np.float32).reshape(len(x), -1))
        return np.concatenate(outs)

    def _run_text(self, ids: np.ndarray) -> np.ndarray:
        outs = []
        step = self._text_batch or len(ids)
        for i in range(0, len(ids), step):
            chunk = ids[i : i + step]
            feeds = {self._ids_input: chunk.astype(self._ids_dtype)}
            if self._mask_input is not None:
                feeds[self._mask_input] = (chunk != 0).astype(self._ids_dtype)
            try:
                (y,) = self._text.run([self._text_output], feeds)
            except ORT_ERRORS as e:
                raise ModelError(f"{self.files.text.name}: inference failed: {e}") from e
            outs.append(np.asarray(y, np.float32).reshape(len(chunk), -1))
        return np.concatenate(outs)

    def preprocess(self, bgr: np.ndarray) -> np.ndarray:
        """One crop as this model's ``(3, S, S)`` float32 input (see :func:`preprocess`)."""
        return preprocess(bgr, self.image_size, self.crop_mode, self.mean, self.std)

    def encode_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """``(N, D)`` normalised embeddings of preprocessed ``(N, 3, S, S)`` float32 input."""
        return l2_normalize(self._run_vision(pixels))

    def encode_images(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """``(N, D)`` normalised embeddings of HxWx3 BGR uint8 crops (one call per batch)."""
        if not crops:
            return np.zeros((0, self.embed_dim), np.float32)
        return self.encode_pixels(np.stack([self.preprocess(c) for c in crops]))

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        """``(N, D)`` normalised embeddings of prompts (tokenised to the 77-token context)."""
        if not texts:
            return np.zeros((0, self.embed_dim), np.float32)
        return l2_normalize(self._run_text(self.tokenizer(list(texts))))

    def zero_shot(self, image_embeds: np.ndarray, text_embeds: np.ndarray) -> np.ndarray:
        """``(N, L)`` float32 probabilities: ``softmax(logit_scale * image @ text.T)``."""
        return softmax(self.logit_scale * (image_embeds @ text_embeds.T))


def _image_size(shape: Sequence[object], root: Path) -> int:
    """S from the encoder input ``(N, 3, S, S)``; for a dynamic input from the model directory.

    Looked up in order: ``clip.json`` ``image_size``, ``preprocessor_config.json``
    ``crop_size``, ``config.json`` ``vision_config.image_size`` (Hugging Face) or
    ``model_cfg.vision_cfg.image_size`` (OpenCLIP); else 224.
    """
    if len(shape) == 4 and isinstance(shape[2], int) and isinstance(shape[3], int):
        if shape[2] != shape[3]:
            raise ModelError(f"CLIP image encoder input is not square: {list(shape)}")
        return int(shape[2])
    crop = _read_json_opt(root / "preprocessor_config.json").get("crop_size")
    config = _read_json_opt(root / "config.json")
    candidates = (
        _read_json_opt(root / "clip.json").get("image_size"),
        crop.get("height") if isinstance(crop, dict) else crop,
        _dig(config, "vision_config", "image_size"),
        _dig(config, "model_cfg", "vision_cfg", "image_size"),
    )
    return next((c for c in candidates if isinstance(c, int) and c > 0), DEFAULT_IMAGE_SIZE)


def _check_scale(value: object, where: str) -> float:
    """``value`` as a logit scale in (0, 1000]; :class:`ModelError` naming ``where`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ModelError(f"{where}: logit scale must be a number, got {value!r}")
    if not 0 < float(value) <= 1000:
        raise ModelError(f"{where}: logit scale must be in (0, 1000], got {value!r}")
    return float(value)


def _model_logit_scale(
    files: ClipFiles, vision: ort.InferenceSession, text: ort.InferenceSession
) -> tuple[float, str]:
    """The scale the model directory or the encoders declare, and where it came from.

    Order (first found wins): ``clip.json`` ``logit_scale``; ONNX metadata
    ``logit_scale`` of the image, then the text encoder; else
    :data:`DEFAULT_LOGIT_SCALE`. ``config.json``'s ``logit_scale_init_value`` is
    ignored (a training start value, not the trained scale).
    """
    clip_json = files.root / "clip.json"
    value = _read_json_opt(clip_json).get("logit_scale")
    if value is not None:
        return _check_scale(value, f"{clip_json} logit_scale"), clip_json.name
    for path, session in ((files.vision, vision), (files.text, text)):
        raw = session.get_modelmeta().custom_metadata_map.get("logit_scale")
        if raw is not None:
            where = f"{path} metadata logit_scale"
            try:
                number = float(raw)
            except ValueError as e:
                raise ModelError(f"{where}: logit scale must be a number, got {raw!r}") from e
            return _check_scale(number, where), f"{path.name} metadata"
    return DEFAULT_LOGIT_SCALE, "default"


def _dig(doc: object, *keys: str) -> object:
    for k in keys:
        doc = doc.get(k) if isinstance(doc, dict) else None
    return doc


def _triple(value: object, default: tuple[float, float, float]) -> tuple[float, float, float]:
    if (
        isinstance(value, list)
        and len(value) == 3
        and all(isinstance(v, (int, float)) for v in value)
    ):
        return float(value[0]), float(value[1]), float(value[2])
    return default
