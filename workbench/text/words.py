"""Letters and words, for every script: combining marks are part of letters; scripts written without spaces
split into characters (each with its marks)."""

from __future__ import annotations

import regex

from .scripts import UNSPACED_SCRIPTS

LETTER_CLASS = r"\p{L}\p{M}"
"""A letter: categories L and M (a vowel sign or an accent belongs to its letter). Inside ``[...]``."""
WORD_CHAR_CLASS = r"\p{L}\p{M}\p{N}\u200c\u200d"
"""What words are made of: letters, marks, digits and the zero-width (non-)joiners that sit inside words of
Indic scripts and Persian. Inside ``[...]``."""
UNSPACED_CLASS = "".join(rf"\p{{sc={code}}}" for code in UNSPACED_SCRIPTS)
"""Characters of scripts written without spaces between words, punctuation included. Inside ``[...]``."""
UNSPACED_CHAR = rf"(?V1)[[{UNSPACED_CLASS}]&&[{WORD_CHAR_CLASS}]]"
"""A pattern for one word character of an unspaced script (not its punctuation: ``။``, ``་``, ``。``)."""
NOT_UNSPACED_CHAR = rf"(?V1)[^[{UNSPACED_CLASS}]&&[{WORD_CHAR_CLASS}]]"
WORD_PATTERN = rf"{UNSPACED_CHAR}\p{{M}}*|[{WORD_CHAR_CLASS}]+"
"""A word: a character of an unspaced script with the marks that follow it, or a run of word characters (which
may run on into unspaced characters after a spaced one, e.g. ``abc漢``)."""

_WORD = regex.compile(WORD_PATTERN)
_LETTER = regex.compile(rf"[{LETTER_CLASS}]")


def words(text: str, *, casefold: bool = False) -> list[str]:
    """The words of ``text`` (see :data:`WORD_PATTERN`), casefolded if asked."""
    return _WORD.findall(text.casefold() if casefold else text)


def is_letter(char: str) -> bool:
    """True for a letter or a combining mark (categories L and M)."""
    return _LETTER.match(char) is not None


def letter_count(text: str) -> int:
    """Number of letters in ``text``, combining marks included."""
    return len(_LETTER.findall(text))
