"""CLIP model directories that ``edgewatch models fetch`` can download.

Plain frozen data merged into :func:`edgewatch.pipeline.models.registry.builtin_models`
(through :data:`ENTRIES`). Each entry's files land in one directory that
:class:`~edgewatch.pipeline.models.clip.ClipModel` reads as it is: the ONNX
exports of transformers.js (``Xenova/*``: ``onnx/vision_model.onnx`` with input
``pixel_values`` 1x3x224x224 and output ``image_embeds``, ``onnx/text_model.onnx``
with input ``input_ids`` and output ``text_embeds``) plus OpenAI's tokenizer
files from the ``openai/*`` repositories, or another layout ClipModel reads
(``visual.onnx`` + ``textual.onnx``). No ``clip.json`` is needed: OpenAI's
weights use the default logit scale of 100.

Provenance of the checksums: this build has no access to the host, so the
SHA-256 values below were not computed from downloaded bytes here.

* ViT-B/32: each value is the one that several independent public projects pin
  for the same URL (one of them records verifying it against the bytes the URL
  serves); they all agree, and the vision file's value is also the ``oid
  sha256`` of its Git LFS pointer on Hugging Face.
* ViT-B/16: the ``oid sha256`` of each file's Git LFS pointer as Hugging Face
  shows it ("Git LFS Details") for ``mlunar/clip-variants`` (MIT), whose head
  commit ``7895809d`` the URLs are pinned to. These are exports of OpenAI's own
  ``clip`` package (inputs and outputs named ``input`` / ``output``, float32),
  stored here as ``visual.onnx`` / ``textual.onnx``. Transformers.js's
  ``Xenova/clip-vit-base-patch16`` was not used: no published checksum of its
  fp32 files could be found.
* Tokenizer: every OpenAI CLIP model uses the same BPE vocabulary, so both
  entries take ``vocab.json`` + ``merges.txt`` from ``openai/clip-vit-base-patch32``.

``models fetch`` verifies every download against these values, so a stale one
fails loudly rather than installing unverified bytes.
"""

from __future__ import annotations

from edgewatch.pipeline.models.registry import RegistryEntry, RegistryFile

_HF = "https://huggingface.co"
#: Head commit of mlunar/clip-variants (the ViT-B/16 exports).
_MLUNAR = f"{_HF}/mlunar/clip-variants/resolve/7895809dffe293080df26a6cbcf5880c0d872a49/models"

#: OpenAI's CLIP BPE tokenizer, the same for every OpenAI CLIP model.
OPENAI_TOKENIZER = (
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
)

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
        *OPENAI_TOKENIZER,
    ),
)

CLIP_VIT_B16 = RegistryEntry(
    name="clip-vit-b16",
    description="OpenAI CLIP ViT-B/16 (224 px, 512-d), ONNX export of OpenAI's clip package "
    "(mlunar/clip-variants, fp32)",
    task="clip",
    files=(
        RegistryFile(
            url=f"{_MLUNAR}/clip-vit-base-patch16-visual-float32.onnx",
            sha256="185818fe6ff318971efbe10bd01ebedb0787e16e35b3251a269f8c381eb8276f",
            filename="visual.onnx",
        ),
        RegistryFile(
            url=f"{_MLUNAR}/clip-vit-base-patch16-textual-float32.onnx",
            sha256="ca47a6b1e7cfd21467d0e9f2207089c19ea15fd3c828edc8d8993b44623bf505",
            filename="textual.onnx",
        ),
        *OPENAI_TOKENIZER,
    ),
)

#: Every CLIP entry, in the order ``models list`` shows them.
CLIP_MODELS: tuple[RegistryEntry, ...] = (CLIP_VIT_B32, CLIP_VIT_B16)
#: The name :mod:`edgewatch.pipeline.models.registry` imports.
ENTRIES = CLIP_MODELS
