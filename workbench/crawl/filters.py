"""Language-agnostic quality filters (Gopher / FineWeb style), thresholds per language.

Every rule looks at one document and either passes it or names why it is dropped; the crawl counts
drops by that name (``quality:<rule>``). Words are Unicode words (runs of letters, marks and digits;
each character of a script written without spaces is a word of its own), never an English tokenizer.

=========================  =====================================================================  =========
rule                        drops a document whose ...                                             default
=========================  =====================================================================  =========
``min_words``               word count is below                                                    3
``max_words``               word count is above                                                    100000
``mean_word_length``        mean word length (characters) is outside ``[lo, hi]`` (spaced scripts)  [2, 12]
``min_alpha_words``         share of words with a letter is below                                  0.7
``min_letter_ratio``        share of non-space characters that are letters is below                0.6
``max_symbol_ratio``        ``#``/``…``/``...`` per word is above                                  0.1
``max_bullet_lines``        share of lines starting with a bullet is above                         0.9
``max_ellipsis_lines``      share of lines ending with an ellipsis is above                         0.3
``min_punctuated_lines``    share of lines ending in terminal punctuation is below (FineWeb)       0.12
``max_short_lines``         share of lines under 30 characters is above (FineWeb)                   0.67
``max_duplicate_lines``     share of lines that repeat an earlier line is above (Gopher)            0.3
``max_duplicate_line_chars``  share of characters in repeated lines is above (Gopher)              0.2
``max_top_ngram``           share of characters covered by the most frequent word 2/3/4-gram is    0.2/0.18/0.16
                            above (Gopher)
``max_duplicate_ngrams``    share of characters in repeated word 5..10-grams is above (Gopher)      0.15..0.10
=========================  =====================================================================  =========

Rules about lines apply from ``min_lines_for_line_rules`` lines on and n-gram rules from
``min_words_for_ngram_rules`` words on, so short documents (a sentence, a caption) are judged by the
word and character rules only: tiny corpora of sentences are not wiped out by rules made for web pages.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import regex
from pydantic import Field

from ..recipe import StrictModel

_UNSPACED_SCRIPTS = r"\p{sc=Hani}\p{sc=Hira}\p{sc=Kana}\p{sc=Thai}\p{sc=Laoo}\p{sc=Khmr}\p{sc=Mymr}\p{sc=Tibt}"
_WORD = regex.compile(f"[{_UNSPACED_SCRIPTS}]|[\\p{{L}}\\p{{M}}\\p{{N}}]+")
_PLAIN_WORD = re.compile(r"[^\W_]+")  # the same words as _WORD in text without the characters of _NOT_PLAIN
# bits of a character's class, and the characters outside each class
_LETTER, _UNSPACED_CHAR, _MARK = 1, 2, 4
_NOT_IN_CLASS = ((_LETTER, regex.compile(r"\P{L}")), (_UNSPACED_CHAR, regex.compile(f"[^{_UNSPACED_SCRIPTS}]")),
                 (_MARK, regex.compile(r"\P{M}")))
_RE_DIFFERS = 8  # `re` (Python's Unicode version) and `regex` disagree on whether it is a letter or digit
_NOT_PLAIN = _UNSPACED_CHAR | _MARK | _RE_DIFFERS
_ASCII_NON_LETTERS = bytes(c for c in range(128) if not chr(c).isalpha())
_BULLETS = ("•", "●", "○", "▪", "‣", "⁃", "◦", "-", "*", "–", "—", "·")
_TERMINAL = (".", "!", "?", '"', "'", "”", "’", "»", "。", "！", "？", "।", "॥", "።", "؟", "܀", "…", ")")
_ELLIPSIS = ("...", "…")


class FilterThresholds(StrictModel):
    """Thresholds of the quality rules (``None`` switches a rule off); see the module docstring."""

    min_words: int | None = Field(3, ge=0)
    max_words: int | None = Field(100_000, ge=1)
    mean_word_length: tuple[float, float] | None = (2.0, 12.0)
    min_alpha_words: float | None = Field(0.7, ge=0, le=1)
    min_letter_ratio: float | None = Field(0.6, ge=0, le=1)
    max_symbol_ratio: float | None = Field(0.1, ge=0)
    max_bullet_lines: float | None = Field(0.9, ge=0, le=1)
    max_ellipsis_lines: float | None = Field(0.3, ge=0, le=1)
    min_punctuated_lines: float | None = Field(0.12, ge=0, le=1)
    max_short_lines: float | None = Field(0.67, ge=0, le=1)
    max_duplicate_lines: float | None = Field(0.3, ge=0, le=1)
    max_duplicate_line_chars: float | None = Field(0.2, ge=0, le=1)
    max_top_ngram: dict[int, float] | None = Field(default_factory=lambda: {2: 0.2, 3: 0.18, 4: 0.16})
    max_duplicate_ngrams: dict[int, float] | None = Field(
        default_factory=lambda: {5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10})
    min_lines_for_line_rules: int = Field(3, ge=1)
    min_words_for_ngram_rules: int = Field(50, ge=1)


class QualityConfig(StrictModel):
    """``default`` thresholds, overridden field by field per language code."""

    default: FilterThresholds = FilterThresholds()
    languages: dict[str, dict] = Field(default_factory=dict, description="{code: {rule: threshold}}")

    def for_language(self, code: str) -> FilterThresholds:
        override = self.languages.get(code)
        if not override:
            return self.default
        return FilterThresholds.model_validate({**self.default.model_dump(), **override})


@lru_cache(maxsize=1)
def _bmp_classes() -> np.ndarray:
    """Class bits of every Basic Multilingual Plane code point (built once, from the Unicode tables of
    ``regex``)."""
    table = np.zeros(0x10000, dtype=np.uint8)
    chars = "".join(map(chr, range(1, 0x10000)))
    for bit, outside in _NOT_IN_CLASS:
        table[1:][_codepoints(outside.sub("\x00", chars)) != 0] |= bit
    alnum_re = _codepoints(re.sub(r"[\W_]", "\x00", chars)) != 0
    alnum_regex = _codepoints(regex.sub(r"[^\p{L}\p{N}]", "\x00", chars)) != 0
    table[1:][alnum_re != alnum_regex] |= _RE_DIFFERS
    return table


@lru_cache(maxsize=4096)
def _class_of(char: str) -> int:
    """Class bits of one character (those beyond the Basic Multilingual Plane: emoji, rare Han...)."""
    bits = sum(bit for bit, outside in _NOT_IN_CLASS if not outside.match(char))
    differs = bool(re.match(r"[^\W_]", char)) != bool(regex.match(r"[\p{L}\p{N}]", char))
    return bits | (_RE_DIFFERS if differs else 0)


def _words(text: str, classes: np.ndarray | None) -> list[str]:
    """Unicode words (see the module docstring); ``classes``: the text's character classes (None if ASCII).
    Text without marks, unspaced scripts or characters the two engines disagree on is split by ``re``
    (about twice as fast as ``regex``), with the same result."""
    if classes is None or not np.any(classes & _NOT_PLAIN):
        return _PLAIN_WORD.findall(text)
    return _WORD.findall(text)


def _codepoints(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)


def _char_classes(text: str) -> np.ndarray:
    """Class bits (letter, unspaced script, mark, engines disagree) of every character of ``text``."""
    codepoints = _codepoints(text)
    astral = codepoints >= 0x10000
    if not astral.any():
        return _bmp_classes()[codepoints]
    out = np.empty(len(codepoints), dtype=np.uint8)
    out[~astral] = _bmp_classes()[codepoints[~astral]]
    distinct, inverse = np.unique(codepoints[astral], return_inverse=True)
    out[astral] = np.array([_class_of(chr(c)) for c in distinct.tolist()], dtype=np.uint8)[inverse]
    return out


@dataclass
class _Doc:
    text: str
    words: list[str]
    lines: list[str]
    _classes: np.ndarray | None = None

    @property
    def classes(self) -> np.ndarray:
        if self._classes is None:
            self._classes = _char_classes(self.text)
        return self._classes

    def letters(self) -> int:
        """Characters that are letters (Unicode category L)."""
        if self.text.isascii():
            return len(self.text.encode("ascii").translate(None, _ASCII_NON_LETTERS))
        return int(np.count_nonzero(self.classes & _LETTER))

    def unspaced(self) -> int:
        """Characters of scripts written without spaces (each is a word of its own)."""
        return 0 if self.text.isascii() else int(np.count_nonzero(self.classes & _UNSPACED_CHAR))

    def no_letter_words(self) -> int:
        """Words without a letter (numbers...); in ASCII text those are the words made of digits."""
        if self.text.isascii():
            return sum(map(str.isdigit, self.words))
        if not self.words:
            return 0
        joined = "\x00".join(self.words)  # \x00 has no class bit: it only marks where a word ends
        classes = _char_classes(joined)
        word_of = np.cumsum(_codepoints(joined) == 0)
        lettered = np.bincount(word_of, weights=(classes != 0), minlength=len(self.words))
        return int(np.count_nonzero(lettered == 0))


def _line_share(lines: list[str], test) -> float:
    return sum(1 for line in lines if test(line)) / len(lines)


def _duplicate_lines(lines: list[str]) -> tuple[float, float]:
    """Share of lines that repeat an earlier line, and share of characters in them."""
    seen: set[str] = set()
    dup_lines = dup_chars = 0
    for line in lines:
        if line in seen:
            dup_lines += 1
            dup_chars += len(line)
        seen.add(line)
    total = sum(map(len, lines)) or 1
    return dup_lines / len(lines), dup_chars / total


_PRIME = np.uint64(1_000_003)


def _encode(words: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Word ids (1-based, per distinct word) and word lengths, as arrays."""
    vocab = {w: i for i, w in enumerate(dict.fromkeys(words), 1)}  # first occurrence order, in C
    ids = np.fromiter(map(vocab.__getitem__, words), dtype=np.uint64, count=len(words))
    return ids, np.fromiter(map(len, words), dtype=np.int64, count=len(words))


def _ngram_keys(ids: np.ndarray, n: int) -> np.ndarray:
    m = len(ids) - n + 1
    keys = ids[:m].copy()
    with np.errstate(over="ignore"):
        for j in range(1, n):
            keys = keys * _PRIME + ids[j : j + m]
    return keys


def top_ngram_share(words: list[str], n: int) -> float:
    """Characters covered by occurrences of the most frequent word n-gram / characters of all words."""
    return _top_share(*_encode(words), n)


def duplicate_ngram_share(words: list[str], n: int) -> float:
    """Characters of the words inside an n-gram that occurred before / characters of all words."""
    return _duplicate_share(*_encode(words), n)


def _top_share(ids: np.ndarray, lengths: np.ndarray, n: int) -> float:
    if len(ids) < n:
        return 0.0
    _, first, counts = np.unique(_ngram_keys(ids, n), return_index=True, return_counts=True)
    best = int(np.argmax(counts))
    start = int(first[best])
    return float(counts[best] * lengths[start : start + n].sum() / (lengths.sum() or 1))


def _duplicate_share(ids: np.ndarray, lengths: np.ndarray, n: int) -> float:
    if len(ids) < n:
        return 0.0
    keys = _ngram_keys(ids, n)
    _, first = np.unique(keys, return_index=True)
    repeated = np.ones(len(keys), dtype=bool)
    repeated[first] = False
    starts = np.flatnonzero(repeated)
    if not len(starts):
        return 0.0
    cover = np.zeros(len(ids) + 1, dtype=np.int64)
    cover[starts] += 1  # starts are distinct, and so are starts + n: plain fancy indexing adds correctly
    cover[starts + n] -= 1
    covered = np.cumsum(cover[:-1]) > 0
    return float(lengths[covered].sum() / (lengths.sum() or 1))


def check(text: str, limits: FilterThresholds) -> str | None:
    """The first rule ``text`` fails (its name), or ``None`` if it passes every rule."""
    classes = None if text.isascii() else _char_classes(text)
    doc = _Doc(text, _words(text, classes), [line.strip() for line in text.splitlines() if line.strip()], classes)
    for rule in (_word_rules, _character_rules, _line_rules, _ngram_rules):
        reason = rule(doc, limits)
        if reason:
            return reason
    return None


def _word_rules(doc: _Doc, t: FilterThresholds) -> str | None:
    n = len(doc.words)
    if t.min_words is not None and n < t.min_words:
        return "min_words"
    if t.max_words is not None and n > t.max_words:
        return "max_words"
    if not n:
        return None
    unspaced = doc.unspaced()
    spaced = n - unspaced
    if t.mean_word_length is not None and spaced >= max(1, n // 2):
        mean = (sum(map(len, doc.words)) - unspaced) / spaced
        if not t.mean_word_length[0] <= mean <= t.mean_word_length[1]:
            return "mean_word_length"
    if t.min_alpha_words is not None and (n - doc.no_letter_words()) / n < t.min_alpha_words:
        return "min_alpha_words"
    return None


def _character_rules(doc: _Doc, t: FilterThresholds) -> str | None:
    visible = len("".join(doc.text.split()))  # non-space characters (str.isspace)
    if t.min_letter_ratio is not None and visible and doc.letters() / visible < t.min_letter_ratio:
        return "min_letter_ratio"
    if t.max_symbol_ratio is not None and doc.words:
        symbols = doc.text.count("#") + doc.text.count("…") + doc.text.count("...")
        if symbols / len(doc.words) > t.max_symbol_ratio:
            return "max_symbol_ratio"
    return None


def _line_rules(doc: _Doc, t: FilterThresholds) -> str | None:
    lines = doc.lines
    if len(lines) < t.min_lines_for_line_rules:
        return None
    duplicates: list[tuple[float, float]] = []

    def duplicate(k: int) -> float:  # both duplicate-line shares come from one pass
        if not duplicates:
            duplicates.append(_duplicate_lines(lines))
        return duplicates[0][k]

    checks = (
        ("max_bullet_lines", t.max_bullet_lines, lambda: _line_share(lines, lambda s: s.startswith(_BULLETS)), 1),
        ("max_ellipsis_lines", t.max_ellipsis_lines, lambda: _line_share(lines, lambda s: s.endswith(_ELLIPSIS)), 1),
        ("min_punctuated_lines", t.min_punctuated_lines, lambda: _line_share(lines, lambda s: s.endswith(_TERMINAL)),
         -1),
        ("max_short_lines", t.max_short_lines, lambda: _line_share(lines, lambda s: len(s) < 30), 1),
        ("max_duplicate_lines", t.max_duplicate_lines, lambda: duplicate(0), 1),
        ("max_duplicate_line_chars", t.max_duplicate_line_chars, lambda: duplicate(1), 1),
    )
    for name, limit, measure, sign in checks:
        if limit is not None and (measure() > limit if sign > 0 else measure() < limit):
            return name
    return None


def _ngram_rules(doc: _Doc, t: FilterThresholds) -> str | None:
    if len(doc.words) < t.min_words_for_ngram_rules:
        return None
    ids, lengths = _encode("\x00".join(doc.words).casefold().split("\x00"))  # encoded once for every n
    for n, limit in sorted((t.max_top_ngram or {}).items()):
        if _top_share(ids, lengths, n) > limit:
            return f"max_top_ngram_{n}"
    limits = sorted((t.max_duplicate_ngrams or {}).items())
    for k, (n, limit) in enumerate(limits):
        share = _duplicate_share(ids, lengths, n)
        if share > limit:
            return f"max_duplicate_ngrams_{n}"
        # the words inside repeated (n+1)-grams are inside repeated n-grams, so the share only falls as n
        # grows: once it is within every later limit, the later rules pass (and need no pass of their own)
        if k + 1 < len(limits) and share <= min(later for _, later in limits[k + 1:]):
            break
    return None
