"""The CLIP entries of ``edgewatch models fetch``: complete, consistent, and fetchable.

The real hosts cannot be reached here, so the fetch tests serve files from a
real HTTP server on 127.0.0.1 (``test_fetch.server``) through
``$EDGEWATCH_MODEL_MIRROR``: once with the built-in entries as they are (wrong
bytes must be refused by their checksum), once with a ``--registry`` file that
keeps an entry's URLs and file names but pins the bytes of a tiny CLIP built
here, so the fetched directory can be loaded and run.
"""

from __future__ import annotations

import hashlib
import urllib.parse
from pathlib import Path

import numpy as np
import pytest
import test_fetch
from clip_models import TINY, AssetUnavailable, build_clip_dir, openai_bpe, write_hf_tokenizer

from edgewatch.cli import main
from edgewatch.pipeline.models.clip import TEXT_FILES, VISION_FILES, ClipModel, find_clip_files
from edgewatch.pipeline.models.clip_registry import CLIP_MODELS, OPENAI_TOKENIZER
from edgewatch.pipeline.models.clip_tokenizer import ClipTokenizer, find_tokenizer_file
from edgewatch.pipeline.models.fetch import ChecksumError, fetch_model
from edgewatch.pipeline.models.registry import RegistryEntry, builtin_models

#: The loopback HTTP server of the fetch tests (a dict of path -> bytes).
server = test_fetch.server

NAMES = ["clip-vit-b32", "clip-vit-b16"]


def _path(url: str) -> str:
    return urllib.parse.urlsplit(url).path


@pytest.mark.parametrize("name", NAMES)
def test_entry_is_a_complete_clip_directory(name: str, tmp_path: Path) -> None:
    entry = builtin_models()[name]
    assert entry.task == "clip" and entry in CLIP_MODELS
    names = [f.filename for f in entry.files]
    assert sum(n in VISION_FILES for n in names) == 1
    assert sum(n in TEXT_FILES for n in names) == 1
    assert {"vocab.json", "merges.txt"} <= set(names)
    for f in entry.files:
        assert f.url.startswith("https://huggingface.co/") and "/resolve/" in f.url
        (tmp_path / f.filename).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / f.filename).write_bytes(b"")
    found = find_clip_files(tmp_path)  # the fetched directory is what ClipModel looks for
    assert found.vision.name in names and found.text.name in names
    assert find_tokenizer_file(tmp_path) == tmp_path / "vocab.json"


def test_entries_agree_with_each_other() -> None:
    files = [f for e in CLIP_MODELS for f in e.files]
    by_sha: dict[str, set[str]] = {}
    for f in files:
        by_sha.setdefault(f.sha256, set()).add(f.url)
    assert all(len(urls) == 1 for urls in by_sha.values()), by_sha  # one checksum, one URL
    onnx = [f for f in files if f.filename.endswith(".onnx")]
    assert len({f.sha256 for f in onnx}) == len(onnx) == 4  # two encoders per model
    for entry in CLIP_MODELS:  # OpenAI's tokenizer is shared by every OpenAI CLIP
        assert set(OPENAI_TOKENIZER) <= set(entry.files)
    assert [e.name for e in CLIP_MODELS] == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_builtin_entry_refuses_wrong_bytes_from_a_mirror(
    name: str, server: tuple[str, test_fetch.ServerState], tmp_path: Path
) -> None:
    base, state = server
    first = builtin_models()[name].files[0]
    state.files = {_path(first.url): b"not the model"}
    with pytest.raises(ChecksumError, match="SHA-256 mismatch"):
        fetch_model(name, tmp_path, mirror=base, progress=False)
    assert [p for p, _ in state.requests] == [_path(first.url)]
    assert not any(p.is_file() for p in tmp_path.rglob("*"))


def _rename_io(src: Path, dst: Path, names: dict[str, str]) -> None:
    """A copy of an ONNX graph with inputs/outputs renamed (``pixel_values`` -> ``input``)."""
    import onnx

    model = onnx.load(str(src))
    g = model.graph
    for v in [*g.input, *g.output]:
        v.name = names.get(v.name, v.name)
    for node in g.node:
        node.input[:] = [names.get(n, n) for n in node.input]
        node.output[:] = [names.get(n, n) for n in node.output]
    onnx.save(model, str(dst))


@pytest.fixture(scope="module")
def tiny_payloads(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """Bytes by file name: a tiny CLIP in both layouts, and OpenAI's tokenizer as HF files."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    try:
        src = build_clip_dir(TINY, seed=0)
        bpe = openai_bpe()
    except AssetUnavailable as e:
        pytest.skip(f"cannot fetch the OpenAI CLIP vocabulary from PyPI: {e}")
    d = tmp_path_factory.mktemp("tiny")
    write_hf_tokenizer(ClipTokenizer.from_openai_bpe(bpe), d)
    # mlunar/clip-variants names every input "input" and every output "output"
    _rename_io(src / "vision_model.onnx", d / "visual.onnx",
               {"pixel_values": "input", "image_embeds": "output"})
    _rename_io(src / "text_model.onnx", d / "textual.onnx",
               {"input_ids": "input", "text_embeds": "output"})
    out = {n: (d / n).read_bytes() for n in ("visual.onnx", "textual.onnx", "vocab.json",
                                             "merges.txt")}
    for n in ("vision_model.onnx", "text_model.onnx"):
        out[n] = (src / n).read_bytes()
    return out


@pytest.mark.parametrize("name", NAMES)
def test_fetch_clip_entry_through_a_mirror_and_run_it(
    name: str,
    server: tuple[str, test_fetch.ServerState],
    tiny_payloads: dict[str, bytes],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    base, state = server
    entry: RegistryEntry = builtin_models()[name]
    state.files = {_path(f.url): tiny_payloads[f.filename] for f in entry.files}
    lines = [f"models:\n  - name: {name}\n    task: clip\n    files:\n"]
    for f in entry.files:  # the entry's own URLs and names, the local bytes' checksums
        sha = hashlib.sha256(tiny_payloads[f.filename]).hexdigest()
        lines.append(f"      - {{url: '{f.url}', sha256: {sha}, filename: {f.filename}}}\n")
    reg = tmp_path / "reg.yaml"
    reg.write_text("".join(lines))
    monkeypatch.setenv("EDGEWATCH_MODEL_MIRROR", base)

    rc = main(["models", "fetch", name, "--dest", str(tmp_path / "m"), "--registry", str(reg)])
    assert rc == 0, capsys.readouterr().err
    assert [p for p, _ in state.requests] == [_path(f.url) for f in entry.files]
    model_dir = tmp_path / "m" / name
    assert sorted(p.name for p in model_dir.iterdir()) == sorted(f.filename for f in entry.files)

    clip = ClipModel.load(model_dir, device="cpu")
    ref = ClipModel.load(build_clip_dir(TINY, seed=0), device="cpu", logit_scale=100.0)
    assert clip.logit_scale == 100.0  # no clip.json: OpenAI's scale
    crop = np.random.default_rng(0).integers(0, 256, (120, 60, 3), dtype=np.uint8)
    texts = ["a photo of a person.", "a photo of a delivery worker."]
    np.testing.assert_allclose(clip.encode_images([crop]), ref.encode_images([crop]), atol=1e-6)
    np.testing.assert_allclose(clip.encode_text(texts), ref.encode_text(texts), atol=1e-6)
