"""Test helpers: the real OpenAI CLIP vocabulary and randomly initialised CLIP models.

* :func:`openai_bpe` fetches ``bpe_simple_vocab_16e6.txt.gz`` from the
  ``open_clip_torch`` wheel on PyPI (``pip download --no-deps``) into a cache
  directory, and unpacks the wheel's ``open_clip/tokenizer.py`` beside it so the
  reference tokenizer can be imported (it needs ``ftfy``, ``regex`` and ``torch``).
* :func:`build_clip_dir` builds a ``transformers.CLIPModel`` with random weights,
  exports both encoders with ``torch.onnx.export`` into a model directory in
  the layout edgewatch reads (``vision_model.onnx``, ``text_model.onnx``,
  the BPE file, ``clip.json`` with the model's logit scale) and caches it by
  a hash of its recipe.

torch and transformers are imported inside the functions: this module is
collected by ``--doctest-modules`` even where they are not installed.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
ASSETS = REPO / ".cache" / "edgewatch" / "test-assets"
BPE_NAME = "bpe_simple_vocab_16e6.txt.gz"

#: A tiny CLIP: 224 px input, ViT with 32 px patches, 48-wide embeddings.
TINY = {
    "text_config": {
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "max_position_embeddings": 77,
    },
    "vision_config": {
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "image_size": 224,
        "patch_size": 32,
    },
    "projection_dim": 48,
}
#: ViT-B/32 as released by OpenAI (transformers' CLIPConfig defaults).
VIT_B32: dict[str, Any] = {"text_config": {}, "vision_config": {}, "projection_dim": 512}


class AssetUnavailable(RuntimeError):
    """The registry (PyPI) could not be reached; tests skip with this message."""


def openai_bpe(cache: Path = ASSETS) -> Path:
    """Path of OpenAI's BPE vocabulary, downloaded once from the open_clip_torch wheel."""
    target = cache / "open_clip" / BPE_NAME
    if target.is_file() and (target.parent / "tokenizer.py").is_file():
        return target
    wheels = cache / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    found = sorted(wheels.glob("open_clip_torch-*.whl"))
    if not found:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--quiet",
            "open_clip_torch",
            "-d",
            str(wheels),
        ]
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
        found = sorted(wheels.glob("open_clip_torch-*.whl"))
        if run.returncode != 0 or not found:
            raise AssetUnavailable(
                f"pip download open_clip_torch failed: {run.stderr.strip()[-300:]}"
            )
    with zipfile.ZipFile(found[-1]) as whl:
        for member in (f"open_clip/{BPE_NAME}", "open_clip/tokenizer.py"):
            (cache / member).parent.mkdir(parents=True, exist_ok=True)
            (cache / member).write_bytes(whl.read(member))
    return target


def reference_tokenizer(bpe: Path) -> Any:
    """open_clip's ``SimpleTokenizer`` imported from the unpacked wheel file (not installed)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "_ref_open_clip_tokenizer", bpe.parent / "tokenizer.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.SimpleTokenizer(str(bpe))


def write_hf_tokenizer(tok: Any, folder: Path, merges_as_pairs: bool = False) -> None:
    """Hugging Face's tokenizer files for ``tok`` (a ``ClipTokenizer``) in ``folder``:
    ``vocab.json`` + ``merges.txt`` and ``tokenizer.json`` (merges as ``"a b"``
    strings, or as ``[a, b]`` pairs with ``merges_as_pairs``)."""
    merges = sorted(tok.bpe_ranks, key=tok.bpe_ranks.__getitem__)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(tok.encoder), encoding="utf-8")
    (folder / "merges.txt").write_text(
        "#version: 0.2\n" + "\n".join(f"{a} {b}" for a, b in merges) + "\n", encoding="utf-8"
    )
    doc = {
        "model": {
            "type": "BPE",
            "vocab": tok.encoder,
            "merges": [list(m) if merges_as_pairs else " ".join(m) for m in merges],
        },
        "added_tokens": [
            {"id": tok.sot_id, "content": "<|startoftext|>"},
            {"id": tok.eot_id, "content": "<|endoftext|>"},
        ],
    }
    (folder / "tokenizer.json").write_text(json.dumps(doc), encoding="utf-8")


def _recipe_key(recipe: dict[str, Any], seed: int) -> str:
    import torch
    import transformers

    blob = json.dumps(
        [recipe, seed, torch.__version__, transformers.__version__, 2], sort_keys=True
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def build_torch_clip(recipe: dict[str, Any], seed: int = 0) -> Any:
    """A ``transformers.CLIPModel`` with seeded random weights, in eval mode."""
    import torch
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(seed)
    cfg = CLIPConfig(
        text_config=recipe["text_config"],
        vision_config=recipe["vision_config"],
        projection_dim=recipe["projection_dim"],
    )
    cfg._attn_implementation = "eager"
    return CLIPModel(cfg).eval()


def _export(model: Any, out: Path) -> None:
    import torch

    class Vision(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.m = model

        def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
            return self.m.visual_projection(
                self.m.vision_model(pixel_values=pixel_values).pooler_output
            )

    class Text(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.m = model

        def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
            return self.m.text_projection(self.m.text_model(input_ids=input_ids).pooler_output)

    size = model.config.vision_config.image_size
    with torch.no_grad():
        torch.onnx.export(
            Vision(),
            (torch.zeros(2, 3, size, size),),
            str(out / "vision_model.onnx"),
            input_names=["pixel_values"],
            output_names=["image_embeds"],
            dynamic_axes={"pixel_values": {0: "batch"}, "image_embeds": {0: "batch"}},
            dynamo=False,
            opset_version=17,
        )
        ids = torch.zeros(2, 77, dtype=torch.long)
        ids[:, 0], ids[:, 1] = 49406, 49407
        torch.onnx.export(
            Text(),
            (ids,),
            str(out / "text_model.onnx"),
            input_names=["input_ids"],
            output_names=["text_embeds"],
            dynamic_axes={"input_ids": {0: "batch"}, "text_embeds": {0: "batch"}},
            dynamo=False,
            opset_version=17,
        )


def build_clip_dir(recipe: dict[str, Any] = TINY, seed: int = 0, cache: Path = ASSETS) -> Path:
    """A cached edgewatch CLIP model directory exported from :func:`build_torch_clip`."""
    out = cache / f"clip-{_recipe_key(recipe, seed)}"
    if (out / "clip.json").is_file():
        return out
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model = build_torch_clip(recipe, seed)
    _export(model, tmp)
    shutil.copy(openai_bpe(cache), tmp / BPE_NAME)
    (tmp / "clip.json").write_text(
        json.dumps({"logit_scale": float(model.logit_scale.detach().exp())})
    )
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


def write_toy_encoders(
    d: Path, spatial: object, batch: object, dim: int = 8, reshape_batch: int | None = None
) -> None:
    """A toy CLIP encoder pair built with the ONNX helper API (``image_encoder.onnx``,
    ``text_encoder.onnx``): the image encoder mean-pools RGB and projects it to ``dim``,
    the text encoder averages a random token-embedding table over the 77 positions.

    ``spatial`` / ``batch`` are the declared input dims (an int or a symbol name).
    ``reshape_batch`` hard-codes the batch inside the image graph, so the model
    fails at run time for any other batch size (fault injection).
    """
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    proj = numpy_helper.from_array(rng.normal(size=(3, dim)).astype(np.float32), "proj")
    inits = [proj]
    if reshape_batch is None:
        flatten = helper.make_node("Flatten", ["pooled"], ["flat"])
    else:
        inits.append(numpy_helper.from_array(np.array([reshape_batch, 3], np.int64), "shape"))
        flatten = helper.make_node("Reshape", ["pooled", "shape"], ["flat"])
    vision = helper.make_graph(
        [
            helper.make_node("GlobalAveragePool", ["pixel_values"], ["pooled"]),
            flatten,
            helper.make_node("MatMul", ["flat", "proj"], ["image_embeds"]),
        ],
        "vision",
        [
            helper.make_tensor_value_info(
                "pixel_values", TensorProto.FLOAT, [batch, 3, spatial, spatial]
            )
        ],
        [helper.make_tensor_value_info("image_embeds", TensorProto.FLOAT, [batch, "d"])],
        inits,
    )
    table = numpy_helper.from_array(rng.normal(size=(49408, dim)).astype(np.float32), "table")
    axes = numpy_helper.from_array(np.array([1], np.int64), "axes")
    text = helper.make_graph(
        [
            helper.make_node("Gather", ["table", "input_ids"], ["tok"]),
            helper.make_node("ReduceMean", ["tok", "axes"], ["text_embeds"], keepdims=0),
        ],
        "text",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, [batch, 77])],
        [helper.make_tensor_value_info("text_embeds", TensorProto.FLOAT, [batch, "d"])],
        [table, axes],
    )
    for graph, name in ((vision, "image_encoder.onnx"), (text, "text_encoder.onnx")):
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
        model.ir_version = 9
        onnx.save(model, str(d / name))
