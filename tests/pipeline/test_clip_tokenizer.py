# ruff: noqa: RUF001 - the parity table holds look-alike Unicode on purpose
"""CLIP tokenizer: parity with open_clip's reference SimpleTokenizer on the real vocabulary.

The vocabulary (``bpe_simple_vocab_16e6.txt.gz``) and the reference
``tokenizer.py`` come from the ``open_clip_torch`` wheel, fetched with
``pip download --no-deps`` into ``.cache/edgewatch/test-assets`` (skipped only
when pip cannot reach the registry). The reference needs ``ftfy``, ``regex``
and ``torch``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from clip_models import AssetUnavailable, openai_bpe, reference_tokenizer, write_hf_tokenizer

from edgewatch.errors import ModelError
from edgewatch.pipeline.models.clip_tokenizer import (
    CONTEXT_LENGTH,
    ClipTokenizer,
    bytes_to_unicode,
    clean_text,
    find_tokenizer_file,
)

_HAND = [
    "a photo of a dog.",
    "A Photo Of A DOG.",
    "person wearing a red jacket",
    "person carrying a backpack",
    "delivery worker",
    "",
    " ",
    "\t\n  \r",
    "a",
    "I",
    "don't",
    "it's they're we've I'm you'll he'd",
    "DON'T IT'S",
    "rock'n'roll",
    "o'clock",
    "hello, world!",
    "!!!???...",
    "---===+++",
    "a--b__c",
    "(parenthesis) [brackets] {braces}",
    "email@example.com",
    "https://example.com/path?q=1&x=2",
    "C:\\path\\to\\file.txt",
    "#hashtag @mention $100 50% 3.14159",
    "1234567890",
    "1st 2nd 3rd 4th",
    "0x1F600",
    "café naïve résumé",
    "Ünïcödé ÀÉÎÕÜ",
    "straße",
    "Ελληνικά λέξεις",
    "русский текст",
    "日本語のテキスト",
    "中文文本测试",
    "한국어 텍스트",
    "עברית",
    "العربية",
    "हिन्दी",
    "emoji 😀 😃 😄",
    "👍🏽 thumbs",
    "👨‍👩‍👧‍👦 family",
    "flags 🇺🇸🇩🇪",
    "♥♦♣♠",
    "→ ← ↑ ↓",
    "tom &amp; jerry",
    "&amp;amp; double",
    "&lt;b&gt;bold&lt;/b&gt;",
    "&quot;quoted&quot;",
    "&#39;apos&#39; &#x27;hex&#x27;",
    "&nbsp;nbsp&nbsp;",
    "<b>html tags</b>",
    "a &copy; b",
    "mojibake: cafÃ©",
    "â€œsmart quotesâ€\x9d",
    "“curly” ‘quotes’",
    "em — dash – en",
    "ﬁ ligature ﬂ",
    "full-width ＡＢＣ １２３",
    "½ ¼ ² ³",
    "Ⅻ roman",
    "tab\tseparated\tvalues",
    "line\nbreaks\nhere",
    "   leading and trailing   ",
    "multiple     spaces",
    "\u200bzero\u200bwidth",
    "combining e\u0301 accent",
    "ǅ titlecase",
    "ß ẞ",
    "İstanbul ı",
    "a" * 60,
    "ab" * 40,
    "supercalifragilisticexpialidocious",
    "pneumonoultramicroscopicsilicovolcanoconiosis",
    "a photo of a {}.",
    "itap of a {}.",
    "a bad photo of the {}.",
    "'s 't 're 've 'm 'll 'd",
    "'S'T'RE",
    "x's",
    "123abc456",
    "abc123def",
    "3D 4K 1080p",
    "v2.0.1-beta+build",
    "$$$ €€€ £££ ¥¥¥",
    "∑∫∂√∞",
    "<|endoftext|> inside",
    "<start_of_text> literal",
    "word " * 90,
    "🙂" * 50,
    "日本" * 60,
]
_LABELS = ["person", "car", "bicycle", "dog", "red jacket", "hard hat", "backpack", "suitcase"]
_TEMPLATES = ["a photo of a {}.", "a blurry photo of a {}.", "a CCTV image of the {}!", "{}s?"]
#: 100+ prompts: hand-picked edge cases plus label x template combinations.
STRINGS = _HAND + [t.format(lb) for t in _TEMPLATES for lb in _LABELS]


@pytest.fixture(scope="session")
def bpe_file() -> Path:
    try:
        return openai_bpe()
    except AssetUnavailable as e:
        pytest.skip(f"cannot fetch the OpenAI CLIP vocabulary from PyPI: {e}")


@pytest.fixture(scope="session")
def reference(bpe_file: Path) -> object:
    pytest.importorskip("ftfy")
    pytest.importorskip("torch", reason="open_clip's reference tokenizer imports torch")
    return reference_tokenizer(bpe_file)


@pytest.fixture(scope="session")
def tokenizer(bpe_file: Path) -> ClipTokenizer:
    return ClipTokenizer.from_openai_bpe(bpe_file)


def test_enough_strings() -> None:
    assert len(STRINGS) >= 100


@pytest.mark.parametrize("text", STRINGS)
def test_parity_with_reference(text: str, tokenizer: ClipTokenizer, reference: object) -> None:
    if "<start_of_text>" in text or "<|endoftext|>" in text:
        pytest.skip(
            "special-token literals follow OpenAI's pattern, not open_clip's renamed "
            "specials; exact ids in test_exact_ids"
        )
    expected = reference(text).numpy()  # type: ignore[operator]
    np.testing.assert_array_equal(tokenizer(text), expected)


@pytest.mark.parametrize(
    ("text", "ids"),
    [
        ("a photo of a dog.", [49406, 320, 1125, 539, 320, 1929, 269, 49407]),
        ("", [49406, 49407]),
        ("A   PHOTO\tof a DOG.", [49406, 320, 1125, 539, 320, 1929, 269, 49407]),
        ("tom &amp;amp; jerry", [49406, 2435, 261, 9164, 49407]),
        # OpenAI's pattern matches the special-token literals whole (open_clip renames them).
        ("<|endoftext|>", [49406, 49407, 49407]),
        ("<|startoftext|>", [49406, 49406, 49407]),
    ],
)
def test_exact_ids(text: str, ids: list[int], tokenizer: ClipTokenizer) -> None:
    row = tokenizer(text)[0]
    assert row[: len(ids)].tolist() == ids
    assert not row[len(ids) :].any()


def test_special_token_literals(tokenizer: ClipTokenizer) -> None:
    # open_clip's specials are "<start_of_text>"; for us that is plain text.
    assert tokenizer.sot_id not in tokenizer.encode("<start_of_text> literal")


@pytest.mark.parametrize(
    ("words", "truncated"), [(10, False), (75, False), (76, True), (300, True)]
)
def test_truncation_keeps_eot_and_warns(
    words: int, truncated: bool, tokenizer: ClipTokenizer, caplog: pytest.LogCaptureFixture
) -> None:
    text = " ".join(["dog"] * words)  # "dog" is one token
    with caplog.at_level(logging.WARNING, logger="edgewatch.pipeline.models.clip_tokenizer"):
        row = tokenizer(text)[0]
    assert row.shape == (CONTEXT_LENGTH,)
    assert row[0] == tokenizer.sot_id
    n = min(words + 2, CONTEXT_LENGTH)
    assert row[n - 1] == tokenizer.eot_id
    assert (row[1 : n - 1] == 1929).all()
    assert ("more than the context" in caplog.text) is truncated


@pytest.mark.parametrize(
    ("layout", "pairs"),
    [
        ("tokenizer.json", False),
        ("tokenizer.json", True),
        ("vocab.json", False),
        ("textual/tokenizer.json", True),
    ],
)
def test_file_formats_agree(
    layout: str, pairs: bool, tokenizer: ClipTokenizer, tmp_path: Path
) -> None:
    folder = tmp_path / Path(layout).parent
    write_hf_tokenizer(tokenizer, folder, pairs)
    if layout == "vocab.json":
        (folder / "tokenizer.json").unlink()
    assert find_tokenizer_file(tmp_path) == tmp_path / layout
    other = ClipTokenizer.from_dir(tmp_path)
    np.testing.assert_array_equal(other(STRINGS[:40]), tokenizer(STRINGS[:40]))


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({}, "no CLIP tokenizer"),
        ({"vocab.json": "{}"}, "no vocabulary"),
        ({"vocab.json": '{"a": 0}'}, "needs"),
        ({"tokenizer.json": "not json"}, "cannot read"),
        ({"tokenizer.json": '{"model": {"type": "WordPiece", "vocab": {"a": 1}}}'}, "not a BPE"),
        (
            {"tokenizer.json": '{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}}'},
            "special tokens",
        ),
        ({"bpe_simple_vocab_16e6.txt.gz": "plain text, not gzip"}, "cannot read CLIP BPE"),
    ],
)
def test_bad_files(files: dict[str, str], message: str, tmp_path: Path) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    with pytest.raises(ModelError, match=message):
        ClipTokenizer.from_dir(tmp_path)


@pytest.mark.parametrize(
    ("raw", "clean"),
    [("  Hello\t\nWorld  ", "hello world"), ("&amp;amp;", "&"), ("A&lt;B", "a<b"), ("ÀB", "àb")],
)
def test_clean_text(raw: str, clean: str) -> None:
    assert clean_text(raw) == clean


def test_byte_map_is_a_bijection_in_reference_order() -> None:
    table = bytes_to_unicode()
    assert len(set(table.values())) == 256
    assert list(table)[:3] == [ord("!"), ord('"'), ord("#")]
    assert table[ord(" ")] == "Ġ"


@pytest.mark.parametrize(
    ("text", "decoded"),
    [
        ("a photo of a café 😀", "a photo of a café 😀 "),
        ("Hello, World!", "hello , world ! "),
        ("日本語 123", "日本語 1 2 3 "),
    ],
)
def test_decode(text: str, decoded: str, tokenizer: ClipTokenizer) -> None:
    assert tokenizer.decode(tokenizer.encode(text)) == decoded
