"""Character n-grams of the seed model: the text it reads (letters and apostrophes between single spaces) and the
n-grams of that text as numbers: up to four 16-bit character ids packed into one uint64 key, or a dense index
when the alphabet is small enough for a table of every possible n-gram."""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np
import regex

from ...text import LETTER_CLASS
from .base import Memo

_NON_LETTERS = regex.compile(rf"[^{LETTER_CLASS}']+")  # combining marks are part of letters
_APOSTROPHES = "\u2019\u2018`\u02bc\u00b4"  # read as "'"
SLOT_BITS = 16  # an n-gram is packed into a uint64 key: up to 4 character ids of 16 bits
MAX_ALPHABET = (1 << SLOT_BITS) - 1
_CODEPOINTS = 0x110000


def _letter_or_space(code: int) -> int:
    """``str.translate`` value of a code point: an apostrophe becomes ``'``, a character ``_NON_LETTERS`` matches a
    space, others stay."""
    char = chr(code)
    return 39 if char in _APOSTROPHES else 32 if _NON_LETTERS.match(char) else code


_LETTERS_ONLY = Memo(_letter_or_space)


def normalize_for_ngrams(text: str) -> str:
    """NFKC, lowercase, apostrophes unified, digits/punctuation dropped, spaces as word boundaries (the same as
    replacing each run of ``_NON_LETTERS`` by one space, in a ``translate`` and a ``split``)."""
    # (lowercasing commutes with the apostrophes: none has a case, all are case-ignorable for a final sigma)
    text = unicodedata.normalize("NFKC", text).lower().translate(_LETTERS_ONLY)
    return " " + " ".join(text.split()) + " "


def packed_ngrams(ids: np.ndarray, n: int, m: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``m`` packed keys of the ``n``-grams of ``ids`` (uint64) and which hold no unknown (id 0) character."""
    key = ids[:m] << np.uint64(SLOT_BITS * 3)
    valid = ids[:m] != 0
    for j in range(1, n):
        part = ids[j : j + m]
        key |= part << np.uint64(SLOT_BITS * (3 - j))
        valid &= part != 0
    return key, valid


def dense_ngrams(ids: np.ndarray, n: int, m: int, base: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``m`` dense indexes ``sum(id_j * base**(n-1-j))`` of the ``n``-grams of ``ids`` and which hold no unknown
    (id 0) character."""
    index = ids[:m].astype(np.int64)
    valid = index != 0
    for j in range(1, n):
        part = ids[j : j + m].astype(np.int64)
        index = index * base + part
        valid &= part != 0
    return index, valid


def ngram_keys(ids: np.ndarray, orders: Sequence[int]) -> tuple[np.ndarray, int]:
    """Packed keys of every n-gram without an unknown (id 0) character, and the n-gram count."""
    ids = ids.astype(np.uint64)
    parts, total = [], 0
    for n in orders:
        m = len(ids) - n + 1
        if m <= 0:
            continue
        total += m
        key, valid = packed_ngrams(ids, n, m)
        parts.append(key[valid])
    keys = np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint64)
    return keys, total


def lookup_table(alphabet: np.ndarray) -> np.ndarray:
    """Code point -> character id (1-based position in ``alphabet``; 0: not in it)."""
    table = np.zeros(_CODEPOINTS, dtype=np.uint16)
    table[alphabet] = np.arange(1, len(alphabet) + 1, dtype=np.uint16)
    return table


def train_alphabet(texts: Iterable[list[str]]) -> np.ndarray:
    """Code points of the training text, most frequent first, at most 65,535 of them."""
    counts: Counter[str] = Counter()
    for lines in texts:
        for line in lines:
            counts.update(line)
    counts.pop("\x00", None)
    return np.array([ord(c) for c, _ in counts.most_common(MAX_ALPHABET)], dtype=np.uint32)
