"""CLIP model directories that ``edgewatch models fetch`` can download.

Plain frozen data merged into :func:`edgewatch.pipeline.models.registry.builtin_models`
(through :data:`ENTRIES`). Each entry's files land in one directory that
:class:`~edgewatch.pipeline.models.clip.ClipModel` reads as it is: the ONNX
exports of transformers.js (``Xenova/*``: ``onnx/vision_model.onnx`` with input
``pixel_values`` 1x3x224x224 and output ``image_embeds``, ``onnx/text_model.onnx``
with input ``input_ids`` and output ``text_embeds``) plus OpenAI's tokenizer
files from the ``openai/*`` repositories. No ``clip.json`` is needed: OpenAI's
weights use the default logit scale of 100.

Provenance of the checksums: this build has no access to the host, so the
SHA-256 values below were not computed from downloaded bytes here. Each one is
the value that several independent public projects pin for the same URL (one
of them records verifying it against the bytes the URL serves); they all
agree. ``models fetch`` verifies every download against them, so a stale value
fails loudly rather than installing unverified bytes. ViT-B/16
(``Xenova/clip-vit-base-patch16``) is not listed: no published checksum of its
fp32 files could be found, and an entry without one is not allowed.
"""

from __future__ import annotations

from edgewatch.pipeline.models.registry import RegistryEntry, RegistryFile

_HF = "https://huggingface.co"

CLIP_VIT_B32 = RegistryEntry(
    name="clip-vit-b32",
    description="OpenAI CLIP ViT-B/32 (224 px, 512-d), ONNX export by transformers.js (fp32)",
    task="clip",
    files=(
        RegistryFile(
            url=f"{_HF}/Xenova/clip-vit-base-patch32/resolve/main/onnx/vision_model.onnx",
            sha256="fd6e1402a588279d1723c7534d4bcba5bc0b14b47dfab0e46f8c47b8270d7d40",
            filename="vision_model.onnx",
        ),
        RegistryFile(
            url=f"{_HF}/Xenova/clip-vit-base-patch32/resolve/main/onnx/text_model.onnx",
            sha256="3f6571f5bad13a97c469c1622e1cfc4d9aef78b79fdbfcff804ca357bfada8cc",
            filename="text_model.onnx",
        ),
        RegistryFile(
            url=f"{_HF}/openai/clip-vit-base-patch32/resolve/main/vocab.json",
            sha256="5047b556ce86ccaf6aa22b3ffccfc52d391ea4accdab9c2f2407da5b742d4363",
            filename="vocab.json",
        ),
        RegistryFile(
            url=f"{_HF}/openai/clip-vit-base-patch32/resolve/main/merges.txt",
            sha256="f526393189112391ce6f9795d4695f704121ce452c3aad1f5335cc41337eba85",
            filename="merges.txt",
        ),
    ),
)

#: Every CLIP entry, in the order ``models list`` shows them.
CLIP_MODELS: tuple[RegistryEntry, ...] = (CLIP_VIT_B32,)
#: The name :mod:`edgewatch.pipeline.models.registry` imports.
ENTRIES = CLIP_MODELS
