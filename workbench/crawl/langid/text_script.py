"""The dominant script of a text: the writing system (ISO 15924, as FLORES codes use it) most of its letters are
written in. Each letter's script is :func:`workbench.text.char_script` (kana -> ``Jpan``); the numpy table below
only caches it per code point, so that many texts are counted in one pass."""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from ...text import char_script, writing_system
from ...text.scripts import SCRIPT_CODES
from .base import codepoints

# A few very frequent characters that differ between simplified and traditional Chinese.
_HANS_ONLY = frozenset("这们个来时会对说国为学后经与还当发过开关门无长见问电东车")
_HANT_ONLY = frozenset("這們個來時會對說國為學後經與還當發過開關門無長見問電東車")


def _char_script(char: str) -> str | None:
    """The writing system of a letter (its Unicode script; kana -> ``Jpan``), None for any other character."""
    return writing_system(char_script(char))


_SCRIPT_CODES = (None, *SCRIPT_CODES, "Jpan")  # index 0: not a letter of a known script
_SCRIPT_INDEX = {code: i for i, code in enumerate(_SCRIPT_CODES)}
_SCRIPT_TABLE = np.zeros(0x110000, dtype=np.uint8)  # code point -> _SCRIPT_CODES index of its _char_script, by page
_PAGE_BITS = 8
_PAGE_DONE = np.zeros(0x110000 >> _PAGE_BITS, dtype=bool)
_ASCII_LETTER = re.compile(r"[A-Za-z]")
_LATIN1_LETTER = re.compile("[A-Za-z\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u00ff]")


def _is_latin1(text: str) -> bool:
    """True if every character of ``text`` is below U+0100."""
    try:
        text.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return True


def _script_ids(points: np.ndarray) -> np.ndarray:
    """``_SCRIPT_CODES`` index of every code point (the table is filled a 256-code-point page at a time,
    by :func:`_char_script`, the first time a page is met)."""
    pages = points >> _PAGE_BITS
    todo = np.unique(pages[~_PAGE_DONE[pages]])
    for page in todo.tolist():
        start = page << _PAGE_BITS
        for cp in range(start, start + (1 << _PAGE_BITS)):
            script = _char_script(chr(cp))
            if script is not None:
                _SCRIPT_TABLE[cp] = _SCRIPT_INDEX[script]
        _PAGE_DONE[page] = True
    return _SCRIPT_TABLE[points]


def dominant_script(text: str, sample: int = 400) -> str | None:
    """ISO 15924 code of the most frequent script among the first ``sample`` letters (ties: the script
    met first).

    Han text is ``Hans`` or ``Hant`` (by a few telltale characters, default ``Hans``);
    Han mixed with kana is ``Jpan``. ``None`` if the text has no letters.
    """
    return dominant_scripts([text], sample)[0]


def dominant_scripts(texts: Sequence[str], sample: int = 400) -> list[str | None]:
    """:func:`dominant_script` of every text: ASCII text without numpy (its letters are Latin), the rest in one
    numpy pass."""
    out: list[str | None] = [None] * len(texts)
    wide: list[int] = []
    for i, text in enumerate(texts):
        head = text[: sample * 10]
        if head.isascii():
            out[i] = "Latn" if _ASCII_LETTER.search(head) else None
        elif _is_latin1(head) and "\u00b5" not in head:
            # German, French...: every letter below U+0100 is Latin, except the micro sign (left to numpy)
            out[i] = "Latn" if _LATIN1_LETTER.search(head) else None
        else:
            wide.append(i)
    if not wide:
        return out
    heads = [texts[i][: sample * 10] for i in wide]
    lengths = np.fromiter(map(len, heads), dtype=np.int64, count=len(heads))
    ids = _script_ids(codepoints("".join(heads)).astype(np.int64)).astype(np.int64)
    owner = np.repeat(np.arange(len(heads)), lengths)
    letter = ids > 0
    seen = np.cumsum(letter)
    before = np.concatenate(([0], seen))[np.concatenate(([0], np.cumsum(lengths)[:-1]))]  # letters of earlier texts
    rank = seen - 1 - before[owner]  # index of each letter among its own text's letters
    keep = letter & (rank < sample)
    owner, ids = owner[keep], ids[keep]
    width = len(_SCRIPT_CODES)
    counts = np.bincount(owner * width + ids, minlength=len(heads) * width).reshape(len(heads), width)
    jpan, hani = _SCRIPT_INDEX["Jpan"], _SCRIPT_INDEX["Hani"]
    japanese = (counts[:, jpan] > 0) & (counts[:, jpan] >= 0.1 * (counts[:, jpan] + counts[:, hani]))
    counts[japanese, jpan] += counts[japanese, hani]
    counts[japanese, hani] = 0
    counts[:, 0] = 0
    most = counts.max(axis=1, keepdims=True)
    tied = (counts == most) & (most > 0)
    best = tied.argmax(axis=1)
    for row in np.flatnonzero(tied.sum(axis=1) > 1).tolist():  # a tie: the script met first among the tied
        own = ids[np.searchsorted(owner, row) : np.searchsorted(owner, row, side="right")]
        if japanese[row]:
            own = np.where(own == hani, jpan, own)
        best[row] = own[np.flatnonzero(tied[row][own])[0]]
    for i, head, script, letters in zip(wide, heads, best.tolist(), most[:, 0].tolist(), strict=True):
        if letters:
            code = _SCRIPT_CODES[script]
            out[i] = _han_variant(head) if code == "Hani" else code
    return out


def _han_variant(text: str) -> str:
    simplified = sum(char in _HANS_ONLY for char in text)
    traditional = sum(char in _HANT_ONLY for char in text)
    return "Hant" if traditional > simplified else "Hans"
