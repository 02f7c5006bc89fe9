"""CLIP's byte-level BPE tokenizer, token-for-token equal to OpenAI's reference.

The reference is OpenAI CLIP's ``SimpleTokenizer`` (the one open_clip ships):

1. clean: ``ftfy.fix_text`` (when ftfy is installed), ``html.unescape`` twice,
   collapse runs of whitespace to one space, strip, lower-case;
2. split with the pattern ``'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+``
   (the ``regex`` package's Unicode classes, case-insensitive); the literal
   special tokens ``<|startoftext|>`` / ``<|endoftext|>`` match first, as in
   OpenAI's original;
3. map each piece's UTF-8 bytes to printable characters, apply the BPE merges
   by rank, the last symbol carrying the end-of-word marker ``</w>``;
4. frame as ``[SOT] + ids + [EOT]`` and zero-pad to the context length (77).
   Longer prompts are cut to the context length with EOT kept as the last
   token (open_clip's behaviour) and a warning is logged.

Vocabulary and merges come from a model directory: a Hugging Face
``tokenizer.json``, or ``vocab.json`` + ``merges.txt``, or OpenAI's
``bpe_simple_vocab_16e6.txt.gz``. Hugging Face's ``tokenizers`` library is not
used: its CLIP pipeline normalises with NFC instead of ftfy and skips the HTML
unescape, so it is not equal to the reference on every string.

Example (the OpenAI vocabulary gives ``a photo of a dog.`` these ids)::

    tok = ClipTokenizer.from_dir("models/clip-vit-b32")
    tok("a photo of a dog.")[0, :8]   # 49406, 320, 1125, 539, 320, 1929, 269, 49407
"""

from __future__ import annotations

import functools
import gzip
import html
import itertools
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType

import numpy as np
import regex

from edgewatch.errors import ModelError

log = logging.getLogger(__name__)

_ftfy: ModuleType | None
try:  # ftfy is optional: without it, mojibake is left as it is (warned at load)
    import ftfy as _ftfy
except ImportError:  # pragma: no cover - depends on the environment
    _ftfy = None

#: Tokens per prompt in every released CLIP text encoder.
CONTEXT_LENGTH = 77
SOT = "<|startoftext|>"
EOT = "<|endoftext|>"
_END_OF_WORD = "</w>"
#: OpenAI's merges file holds more lines than CLIP uses; it keeps the first 48894.
_OPENAI_MERGES = 49152 - 256 - 2
_PATTERN = (
    r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"
)
#: File names looked up in a model directory, in order of preference.
TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "bpe_simple_vocab_16e6.txt.gz")


@functools.lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from the 256 byte values to printable characters.

    Printable Latin-1 bytes map to themselves; the others (controls, space,
    ...) to code points from U+0100 upwards, in byte order. The dict's order
    (printable bytes first, then the others) is the order of the first 256
    vocabulary entries.
    """
    keep = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAC + 1), *range(0xAE, 0xFF + 1)]
    table = {b: chr(b) for b in keep}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def clean_text(text: str) -> str:
    """The reference clean-up: ftfy, HTML unescape twice, whitespace collapse, lower case."""
    if _ftfy is not None:
        text = _ftfy.fix_text(text)
    text = html.unescape(html.unescape(text)).strip()
    return " ".join(text.split()).strip().lower()


class ClipTokenizer:
    """CLIP BPE tokenizer over a given vocabulary (token string -> id) and merge list.

    ``merges`` is ordered by rank (first merges first). Instances hold a
    per-instance cache of word -> BPE pieces and are safe to share between
    threads (the cache only ever gains equal values).
    """

    def __init__(
        self,
        encoder: Mapping[str, int],
        merges: Sequence[tuple[str, str]],
        context_length: int = CONTEXT_LENGTH,
    ) -> None:
        if context_length < 2:
            raise ModelError(f"CLIP tokenizer context length must be >= 2, got {context_length}")
        missing = [t for t in (SOT, EOT) if t not in encoder]
        if missing:
            raise ModelError(f"CLIP vocabulary lacks the special tokens {missing}")
        self.encoder: dict[str, int] = dict(encoder)
        self.bpe_ranks: dict[tuple[str, str], int] = {m: i for i, m in enumerate(merges)}
        self.context_length = context_length
        self.sot_id = self.encoder[SOT]
        self.eot_id = self.encoder[EOT]
        self._byte_map = bytes_to_unicode()
        self._pattern = regex.compile(_PATTERN, regex.IGNORECASE)
        self._cache: dict[str, tuple[str, ...]] = {SOT: (SOT,), EOT: (EOT,)}
        if _ftfy is None:
            log.warning(
                "ftfy is not installed: broken Unicode in prompts is not repaired, so "
                "such prompts may tokenize differently from the CLIP reference"
            )

    # ------------------------------------------------------------------ loading

    @classmethod
    def from_dir(cls, model_dir: str | Path, context_length: int = CONTEXT_LENGTH) -> ClipTokenizer:
        """Load from the first tokenizer file found in ``model_dir`` (see :data:`TOKENIZER_FILES`).

        ``model_dir`` itself, then its ``textual/`` and ``tokenizer/`` sub-folders,
        are searched. Raises :class:`ModelError` naming the files it looked for.
        """
        path = find_tokenizer_file(model_dir)
        if path.name == "tokenizer.json":
            return cls.from_tokenizer_json(path, context_length)
        if path.name == "vocab.json":
            return cls.from_vocab_merges(path, path.with_name("merges.txt"), context_length)
        return cls.from_openai_bpe(path, context_length)

    @classmethod
    def from_openai_bpe(
        cls, path: str | Path, context_length: int = CONTEXT_LENGTH
    ) -> ClipTokenizer:
        """Load OpenAI's ``bpe_simple_vocab_16e6.txt.gz`` (merges only; the vocab is derived)."""
        try:
            lines = gzip.open(path).read().decode("utf-8").split("\n")
        except (OSError, UnicodeDecodeError, EOFError) as e:
            raise ModelError(f"cannot read CLIP BPE file {path}: {e}") from e
        merges = [_merge_pair(line, path) for line in lines[1 : _OPENAI_MERGES + 1]]
        base = list(bytes_to_unicode().values())
        vocab = [*base, *(b + _END_OF_WORD for b in base), *("".join(m) for m in merges), SOT, EOT]
        return cls({tok: i for i, tok in enumerate(vocab)}, merges, context_length)

    @classmethod
    def from_vocab_merges(
        cls, vocab_path: str | Path, merges_path: str | Path, context_length: int = CONTEXT_LENGTH
    ) -> ClipTokenizer:
        """Load Hugging Face's ``vocab.json`` + ``merges.txt`` pair."""
        encoder = _as_vocab(_read_json(Path(vocab_path)), vocab_path)
        try:
            text = Path(merges_path).read_text(encoding="utf-8")
        except OSError as e:
            raise ModelError(f"CLIP tokenizer: {vocab_path} needs {merges_path}: {e}") from e
        lines = [ln for ln in text.split("\n") if ln and not ln.startswith("#version")]
        return cls(encoder, [_merge_pair(ln, merges_path) for ln in lines], context_length)

    @classmethod
    def from_tokenizer_json(
        cls, path: str | Path, context_length: int = CONTEXT_LENGTH
    ) -> ClipTokenizer:
        """Load a Hugging Face ``tokenizer.json`` (BPE model; merges as strings or pairs)."""
        doc = _read_json(Path(path))
        model = doc.get("model") if isinstance(doc, dict) else None
        if not isinstance(model, dict) or model.get("type") not in (None, "BPE"):
            raise ModelError(f"{path}: not a BPE tokenizer.json")
        encoder = _as_vocab(model.get("vocab"), path)
        added = doc.get("added_tokens")
        for tok in added if isinstance(added, list) else []:
            encoder.setdefault(str(tok["content"]), int(tok["id"]))
        merges = [
            _merge_pair(m, path) if isinstance(m, str) else _pair_from_list(m, path)
            for m in model.get("merges") or []
        ]
        return cls(encoder, merges, context_length)

    # ------------------------------------------------------------------ encoding

    def _bpe(self, word: str) -> tuple[str, ...]:
        """BPE pieces of one pre-tokenised word (already byte-mapped)."""
        cached = self._cache.get(word)
        if cached is not None:
            return cached
        symbols = [*word[:-1], word[-1] + _END_OF_WORD]
        ranks = self.bpe_ranks
        while len(symbols) > 1:
            best_rank, best = None, None
            for pair in itertools.pairwise(symbols):
                r = ranks.get(pair)
                if r is not None and (best_rank is None or r < best_rank):
                    best_rank, best = r, pair
            if best is None:
                break
            first, second = best
            merged: list[str] = []
            i = 0
            while i < len(symbols):
                if i < len(symbols) - 1 and symbols[i] == first and symbols[i + 1] == second:
                    merged.append(first + second)
                    i += 2
                else:
                    merged.append(symbols[i])
                    i += 1
            symbols = merged
        out = tuple(symbols)
        self._cache[word] = out
        return out

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` after clean-up, without SOT/EOT and without truncation."""
        ids: list[int] = []
        for piece in self._pattern.findall(clean_text(text)):
            if piece in (SOT, EOT):
                ids.append(self.encoder[piece])
                continue
            mapped = "".join(self._byte_map[b] for b in piece.encode("utf-8"))
            try:
                ids.extend(self.encoder[p] for p in self._bpe(mapped))
            except KeyError as e:
                raise ModelError(
                    f"CLIP vocabulary has no token {e.args[0]!r} (text {text!r})"
                ) from e
        return ids

    def __call__(self, texts: str | Sequence[str]) -> np.ndarray:
        """``(N, context_length)`` int64 ids: SOT, tokens, EOT, zero padding.

        A prompt longer than the context is truncated (EOT kept last) with a
        warning naming it.
        """
        if isinstance(texts, str):
            texts = [texts]
        out = np.zeros((len(texts), self.context_length), dtype=np.int64)
        for row, text in enumerate(texts):
            ids = [self.sot_id, *self.encode(text), self.eot_id]
            if len(ids) > self.context_length:
                log.warning(
                    "CLIP prompt has %d tokens, more than the context of %d; truncated: %.60r...",
                    len(ids),
                    self.context_length,
                    text,
                )
                ids = [*ids[: self.context_length - 1], self.eot_id]
            out[row, : len(ids)] = ids
        return out

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ``ids`` (specials kept as text, ``</w>`` as spaces); for logs and tests."""
        decoder = {i: t for t, i in self.encoder.items()}
        byte_of = {c: b for b, c in self._byte_map.items()}
        chars = "".join(decoder.get(int(i), "") for i in ids)
        data = bytes(byte_of[c] for c in chars if c in byte_of)
        return data.decode("utf-8", errors="replace").replace(_END_OF_WORD, " ")


def find_tokenizer_file(model_dir: str | Path) -> Path:
    """First tokenizer file under ``model_dir`` (itself, ``textual/``, ``tokenizer/``)."""
    root = Path(model_dir)
    for folder in (root, root / "textual", root / "tokenizer"):
        for name in TOKENIZER_FILES:
            if (folder / name).is_file():
                return folder / name
    raise ModelError(
        f"no CLIP tokenizer in {root}: expected one of {', '.join(TOKENIZER_FILES)}"
        " (vocab.json with merges.txt)"
    )


def _read_json(path: Path) -> dict[str, object]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ModelError(f"cannot read CLIP tokenizer file {path}: {e}") from e
    if not isinstance(doc, dict):
        raise ModelError(f"{path}: expected a JSON object")
    return doc


def _as_vocab(obj: object, path: str | Path) -> dict[str, int]:
    if not isinstance(obj, dict) or not obj:
        raise ModelError(f"{path}: no vocabulary (token -> id mapping)")
    return {str(k): int(v) for k, v in obj.items()}


def _merge_pair(line: str, path: str | Path) -> tuple[str, str]:
    parts = line.split()
    if len(parts) != 2:
        raise ModelError(f"{path}: bad BPE merge line {line!r}")
    return parts[0], parts[1]


def _pair_from_list(item: object, path: str | Path) -> tuple[str, str]:
    if not isinstance(item, list) or len(item) != 2:
        raise ModelError(f"{path}: bad BPE merge {item!r}")
    return str(item[0]), str(item[1])
