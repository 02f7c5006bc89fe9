"""CLIP encoders: edgewatch's ONNX runtime vs the torch model it was exported from.

A tiny ``transformers.CLIPModel`` with seeded random weights is exported once
per recipe into ``.cache/edgewatch/test-assets`` (see ``clip_models.py``);
embeddings and zero-shot probabilities must match torch within 1e-4, with
Hugging Face's ``CLIPImageProcessor`` (PIL backend) as the reference
preprocessing, on real crops of the sample footage.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest
from clip_models import (
    TINY,
    AssetUnavailable,
    build_clip_dir,
    build_torch_clip,
    openai_bpe,
    write_toy_encoders,
)

from edgewatch.config import CropMode, LabelerConfig
from edgewatch.errors import ModelError
from edgewatch.metrics import Metrics
from edgewatch.pipeline.labeler import Labeler
from edgewatch.pipeline.models.clip import CLIP_MEAN, ClipModel, find_clip_files, preprocess

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
cv2 = pytest.importorskip("cv2")

REPO = Path(__file__).resolve().parents[2]
#: (x1, y1, x2, y2) boxes on frame 10 of vtest.avi: tall, wide, tiny, odd-sized, whole frame.
BOXES = [
    (100, 100, 200, 350),
    (300, 200, 613, 301),
    (10, 10, 30, 41),
    (401, 77, 508, 300),
    (0, 0, 768, 576),
    (50, 300, 277, 527),
]


@pytest.fixture(scope="session")
def model_dir() -> Path:
    try:
        return build_clip_dir(TINY, seed=0)
    except AssetUnavailable as e:
        pytest.skip(f"cannot fetch the OpenAI CLIP vocabulary from PyPI: {e}")


@pytest.fixture(scope="session")
def torch_clip() -> object:
    return build_torch_clip(TINY, seed=0)


@pytest.fixture(scope="session")
def clip(model_dir: Path) -> ClipModel:
    return ClipModel.load(model_dir, device="cpu")


@pytest.fixture(scope="session")
def frame() -> np.ndarray:
    for p in (REPO / "samples" / "vtest.avi", Path("/tmp/vtest.avi")):
        if p.is_file():
            cap = cv2.VideoCapture(str(p))
            cap.set(cv2.CAP_PROP_POS_FRAMES, 10)
            ok, img = cap.read()
            cap.release()
            if ok:
                return img
    pytest.skip("sample footage missing: run scripts/fetch-samples (samples/vtest.avi)")


@pytest.fixture(scope="session")
def crops(frame: np.ndarray) -> list[np.ndarray]:
    return [frame[y1:y2, x1:x2].copy() for x1, y1, x2, y2 in BOXES]


def _hf_processor(**kw: object) -> object:
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    return CLIPImageProcessorPil(**kw)


def _reference_pixels(bgr_crops: list[np.ndarray], **kw: object) -> np.ndarray:
    proc = _hf_processor(**kw)
    out = proc(images=[c[:, :, ::-1].copy() for c in bgr_crops], return_tensors="np")  # type: ignore[operator]
    return np.asarray(out["pixel_values"], np.float32)


def test_preprocess_matches_clip_image_processor(crops: list[np.ndarray]) -> None:
    ours = np.stack([preprocess(c, 224) for c in crops])
    np.testing.assert_allclose(ours, _reference_pixels(crops), atol=1e-5, rtol=0)


def test_pad_mode_matches_padded_reference(crops: list[np.ndarray]) -> None:
    fill = tuple(round(m * 255) for m in CLIP_MEAN)
    padded = []
    for c in crops:
        h, w = c.shape[:2]
        side = max(h, w)
        sq = np.empty((side, side, 3), np.uint8)
        sq[...] = fill[::-1]  # BGR
        sq[(side - h) // 2 : (side - h) // 2 + h, (side - w) // 2 : (side - w) // 2 + w] = c
        padded.append(sq)
    ref = _reference_pixels(padded, size={"height": 224, "width": 224}, do_center_crop=False)
    ours = np.stack([preprocess(c, 224, CropMode.PAD) for c in crops])
    np.testing.assert_allclose(ours, ref, atol=1e-5, rtol=0)


def test_cv2_bicubic_is_not_pil_bicubic(crops: list[np.ndarray]) -> None:
    """Why Pillow: OpenCV's INTER_CUBIC does not antialias and misses the reference."""
    big = crops[4]
    rgb = big[:, :, ::-1]
    cv = cv2.resize(rgb, (298, 224), interpolation=cv2.INTER_CUBIC)[:, 37:261].astype(np.float32)
    ref = _reference_pixels([big])[0].transpose(1, 2, 0)
    ref_u8 = ref * np.array([0.26862954, 0.26130258, 0.27577711]) + np.array(CLIP_MEAN)
    assert np.abs(cv / 255 - ref_u8).max() > 0.05


def _torch_image_embeds(model: object, pixels: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        v = model.vision_model(pixel_values=torch.from_numpy(pixels)).pooler_output  # type: ignore[attr-defined]
        e = model.visual_projection(v)  # type: ignore[attr-defined]
    return torch.nn.functional.normalize(e, dim=-1).numpy()


def _torch_text_embeds(model: object, ids: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        t = model.text_model(input_ids=torch.from_numpy(ids)).pooler_output  # type: ignore[attr-defined]
        e = model.text_projection(t)  # type: ignore[attr-defined]
    return torch.nn.functional.normalize(e, dim=-1).numpy()


PROMPTS = ["a photo of a person.", "a photo of a car.", "a man walking", "日本語", "x " * 120]


def test_model_shape_and_scale(clip: ClipModel, torch_clip: object) -> None:
    assert (clip.image_size, clip.embed_dim) == (224, 48)
    assert clip.logit_scale == pytest.approx(float(torch_clip.logit_scale.exp()), rel=1e-6)  # type: ignore[attr-defined]


def test_image_embeddings_match_torch(
    clip: ClipModel, torch_clip: object, crops: list[np.ndarray]
) -> None:
    ref = _torch_image_embeds(torch_clip, _reference_pixels(crops))
    np.testing.assert_allclose(clip.encode_images(crops), ref, atol=1e-4, rtol=0)


def test_text_embeddings_match_torch(clip: ClipModel, torch_clip: object) -> None:
    from clip_models import reference_tokenizer

    ids = reference_tokenizer(openai_bpe())(PROMPTS).numpy()
    np.testing.assert_allclose(
        clip.encode_text(PROMPTS), _torch_text_embeds(torch_clip, ids), atol=1e-4
    )


def test_zero_shot_probabilities_match_torch(
    clip: ClipModel, torch_clip: object, crops: list[np.ndarray]
) -> None:
    from clip_models import reference_tokenizer

    ids = reference_tokenizer(openai_bpe())(PROMPTS).numpy()
    with torch.no_grad():
        out = torch_clip(
            input_ids=torch.from_numpy(ids),  # type: ignore[operator]
            pixel_values=torch.from_numpy(_reference_pixels(crops)),
        )
    ref = out.logits_per_image.softmax(dim=-1).numpy()
    ours = clip.zero_shot(clip.encode_images(crops), clip.encode_text(PROMPTS))
    np.testing.assert_allclose(ours, ref, atol=1e-4, rtol=0)


def _clone(src: Path, dst: Path, skip: set[str]) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for p in src.iterdir():
        if p.name not in skip:
            os.symlink(p, dst / p.name)
    return dst


@pytest.mark.parametrize(
    ("skip", "rename", "logit_scale", "expected"),
    [
        (set(), {}, None, 14.284856),  # clip.json
        ({"clip.json"}, {}, None, 100.0),  # default
        (set(), {}, 50.0, 50.0),  # caller override
        (
            {"vision_model.onnx", "text_model.onnx"},
            {"vision_model.onnx": "visual.onnx", "text_model.onnx": "textual.onnx"},
            None,
            14.284856,
        ),
    ],
)
def test_layouts_and_logit_scale(
    model_dir: Path,
    tmp_path: Path,
    skip: set[str],
    rename: dict[str, str],
    logit_scale: float | None,
    expected: float,
) -> None:
    d = _clone(model_dir, tmp_path / "m", skip)
    for old, new in rename.items():
        os.symlink(model_dir / old, d / new)
    m = ClipModel.load(d, device="cpu", logit_scale=logit_scale)
    assert m.logit_scale == pytest.approx(expected, rel=1e-5)
    if rename:
        assert find_clip_files(d).vision.name == "visual.onnx"


@pytest.mark.parametrize(
    ("skip", "message"),
    [
        ({"bpe_simple_vocab_16e6.txt.gz"}, "no CLIP tokenizer"),
        ({"vision_model.onnx"}, "no CLIP image encoder"),
        ({"text_model.onnx"}, "no CLIP text encoder"),
    ],
)
def test_missing_files(model_dir: Path, tmp_path: Path, skip: set[str], message: str) -> None:
    with pytest.raises(ModelError, match=message):
        ClipModel.load(_clone(model_dir, tmp_path / "m", skip), device="cpu")


def test_embedding_width_mismatch(model_dir: Path, tmp_path: Path) -> None:
    other = build_clip_dir({**TINY, "projection_dim": 32}, seed=1)
    d = _clone(model_dir, tmp_path / "m", {"text_model.onnx"})
    os.symlink(other / "text_model.onnx", d / "text_model.onnx")
    with pytest.raises(ModelError, match=r"image embedding width 48 .* text embedding width 32"):
        ClipModel.load(d, device="cpu")


def test_empty_labels_rejected_by_config(model_dir: Path) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="at least one label"):
        LabelerConfig(model=model_dir, labels=[])


def test_long_prompt_warns_at_start(
    model_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = LabelerConfig(
        model=model_dir,
        labels=["person", " ".join(["word"] * 300)],
        cache_dir=tmp_path / "cache",
        device="cpu",
    )
    lab = Labeler(cfg, {0: "person"}, Metrics())
    with caplog.at_level(logging.WARNING):
        lab.start()
    lab.stop()
    assert "truncated" in caplog.text
    assert lab.text_embeddings[""].shape == (2, 48)


@pytest.mark.parametrize(
    ("spatial", "files", "size"),
    [
        (160, {}, 160),
        ("s", {}, 224),
        ("s", {"clip.json": '{"image_size": 96}'}, 96),
        ("s", {"preprocessor_config.json": '{"crop_size": {"height": 128, "width": 128}}'}, 128),
        ("s", {"config.json": '{"vision_config": {"image_size": 336}}'}, 336),
        ("s", {"config.json": '{"model_cfg": {"vision_cfg": {"image_size": 256}}}'}, 256),
    ],
)
def test_image_size_discovery(
    tmp_path: Path, model_dir: Path, spatial: object, files: dict[str, str], size: int
) -> None:
    write_toy_encoders(tmp_path, spatial, "n")
    os.symlink(
        model_dir / "bpe_simple_vocab_16e6.txt.gz", tmp_path / "bpe_simple_vocab_16e6.txt.gz"
    )
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    m = ClipModel.load(tmp_path, device="cpu")
    assert (m.image_size, m.embed_dim) == (size, 8)


def test_fixed_batch_models_are_chunked(
    tmp_path: Path, model_dir: Path, crops: list[np.ndarray]
) -> None:
    results = []
    for batch in ("n", 1):
        d = tmp_path / str(batch)
        d.mkdir()
        write_toy_encoders(d, 224, batch)
        os.symlink(model_dir / "bpe_simple_vocab_16e6.txt.gz", d / "bpe_simple_vocab_16e6.txt.gz")
        m = ClipModel.load(d, device="cpu")
        results.append((m.encode_images(crops), m.encode_text(PROMPTS)))
    np.testing.assert_allclose(results[0][0], results[1][0], atol=1e-6)
    np.testing.assert_allclose(results[0][1], results[1][1], atol=1e-6)
    assert results[1][0].shape == (len(crops), 8)


def _toy_dir(d: Path, model_dir: Path, meta: dict[str, dict[str, str]]) -> Path:
    """Toy encoders with ONNX metadata (``{"image_encoder.onnx": {key: value}}``) + the BPE."""
    import onnx

    d.mkdir(parents=True, exist_ok=True)
    write_toy_encoders(d, 224, "n")
    os.symlink(model_dir / "bpe_simple_vocab_16e6.txt.gz", d / "bpe_simple_vocab_16e6.txt.gz")
    for name, props in meta.items():
        m = onnx.load(str(d / name))
        onnx.helper.set_model_props(m, props)
        onnx.save(m, str(d / name))
    return d


V, T = "image_encoder.onnx", "text_encoder.onnx"
CLIP_JSON, HF_CONFIG = '{"logit_scale": 50}', '{"logit_scale_init_value": 3.0}'


@pytest.mark.parametrize(
    ("caller", "files", "meta", "expected", "source"),
    [
        (None, {}, {}, 100.0, "default"),
        (None, {}, {V: {"logit_scale": "20"}}, 20.0, "image_encoder.onnx metadata"),
        (None, {}, {T: {"logit_scale": "30.5"}}, 30.5, "text_encoder.onnx metadata"),
        (None, {}, {V: {"logit_scale": "20"}, T: {"logit_scale": "30"}}, 20.0,
         "image_encoder.onnx metadata"),
        # config.json's logit_scale_init_value is a training start value: never used
        (None, {"config.json": HF_CONFIG}, {V: {"logit_scale": "20"}}, 20.0,
         "image_encoder.onnx metadata"),
        (None, {"config.json": HF_CONFIG}, {}, 100.0, "default"),
        (None, {"config.json": HF_CONFIG, "clip.json": CLIP_JSON}, {V: {"logit_scale": "20"}},
         50.0, "clip.json"),
        (7.0, {"config.json": HF_CONFIG, "clip.json": CLIP_JSON}, {V: {"logit_scale": "20"}},
         7.0, "labeler.logit_scale"),
    ],
)
def test_logit_scale_sources(
    tmp_path: Path,
    model_dir: Path,
    caplog: pytest.LogCaptureFixture,
    caller: float | None,
    files: dict[str, str],
    meta: dict[str, dict[str, str]],
    expected: float,
    source: str,
) -> None:
    d = _toy_dir(tmp_path / "m", model_dir, meta)
    for name, text in files.items():
        (d / name).write_text(text)
    with caplog.at_level(logging.INFO, logger="edgewatch.pipeline.models.clip"):
        m = ClipModel.load(d, device="cpu", logit_scale=caller)
    assert m.logit_scale == pytest.approx(expected, rel=1e-4)
    assert f"logit scale {expected:.4g} ({source})" in caplog.text
    assert "training start value" not in caplog.text


def test_hf_default_init_value_is_ignored(tmp_path: Path, model_dir: Path) -> None:
    """OpenAI's released config.json says 2.6592 (scale 14.3); the trained scale is 100."""
    d = _toy_dir(tmp_path / "m", model_dir, {})
    (d / "config.json").write_text('{"logit_scale_init_value": 2.6592}')
    assert ClipModel.load(d, device="cpu").logit_scale == pytest.approx(100.0)


@pytest.mark.parametrize(
    ("files", "meta", "message"),
    [
        ({"clip.json": '{"logit_scale": 5000}'}, {}, r"clip.json logit_scale: .* \(0, 1000\]"),
        ({"clip.json": '{"logit_scale": "x"}'}, {}, "clip.json logit_scale: .* a number"),
        ({}, {V: {"logit_scale": "abc"}}, "image_encoder.onnx metadata logit_scale: .* number"),
        ({}, {T: {"logit_scale": "0"}}, r"text_encoder.onnx metadata logit_scale: .* \(0, 1000"),
        ({}, {V: {"logit_scale": "nan"}}, r"metadata logit_scale: .* \(0, 1000"),
    ],
)
def test_bad_logit_scale_is_a_model_error(
    tmp_path: Path, model_dir: Path, files: dict[str, str], meta: dict, message: str
) -> None:
    d = _toy_dir(tmp_path / "m", model_dir, meta)
    for name, text in files.items():
        (d / name).write_text(text)
    with pytest.raises(ModelError, match=message):
        ClipModel.load(d, device="cpu")
