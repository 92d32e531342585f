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
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import regex
from pydantic import Field

from ..recipe import StrictModel
from .dedup import run_hashes

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


def _encode(words: list[str], casefold: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Word ids (equal words, equal ids: a 64-bit hash of the word) and word lengths, as arrays, from one numpy
    pass over the words joined by NULs (``casefold``: of the casefolded words)."""
    if not words:
        return np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.int64)
    joined = "\x00".join(words)
    if casefold:
        joined = joined.casefold()
    codes = _codepoints(joined)
    nul = np.flatnonzero(codes == 0)
    if len(nul) != len(words) - 1:  # a word holds a NUL of its own: number the distinct words instead
        words = [word.casefold() for word in words] if casefold else words
        vocab = {word: i for i, word in enumerate(dict.fromkeys(words), 1)}
        return (np.fromiter(map(vocab.__getitem__, words), dtype=np.uint64, count=len(words)),
                np.fromiter(map(len, words), dtype=np.int64, count=len(words)))
    starts = np.concatenate(([0], nul + 1))
    ends = np.concatenate((nul, [len(codes)]))
    return run_hashes(codes, starts, ends), ends - starts


def _ngram_keys(ids: np.ndarray, n: int) -> np.ndarray:
    m = len(ids) - n + 1
    keys = ids[:m].copy()
    with np.errstate(over="ignore"):
        for j in range(1, n):
            keys = keys * _PRIME + ids[j : j + m]
    return keys


def top_ngram_share(words: list[str], n: int) -> float:
    """Characters covered by occurrences of the most frequent word n-gram (of equally frequent ones, the first in
    the text) / characters of all words."""
    return _top_share(*_encode(words), n)


def duplicate_ngram_share(words: list[str], n: int) -> float:
    """Characters of the words inside an n-gram that occurred before / characters of all words."""
    return _duplicate_share(*_encode(words), n)


def _top_share(ids: np.ndarray, lengths: np.ndarray, n: int) -> float:
    if len(ids) < n:
        return 0.0
    _, first, counts = np.unique(_ngram_keys(ids, n), return_index=True, return_counts=True)
    top = int(counts.max())
    start = int(first[counts == top].min())  # of the most frequent n-grams, the first in the text
    return float(top * lengths[start : start + n].sum() / (lengths.sum() or 1))


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
    return check_many([text], [limits])[0]


def check_many(texts: Sequence[str], limits: Sequence[FilterThresholds]) -> list[str | None]:
    """:func:`check` of every text with its thresholds; the n-gram rules of all the texts that reach them
    run together, one numpy pass per rule (the per-call cost of numpy is paid once per batch, not per text)."""
    return [rule for rule, _ in judge_many(texts, limits)]


def judge_many(texts: Sequence[str], limits: Sequence[FilterThresholds]) -> list[tuple[str | None, int]]:
    """:func:`check_many`, with each text's word count (:func:`count_words`, found on the way)."""
    verdicts: list[tuple[str | None, int]] = []
    waiting: list[tuple[int, list[str], FilterThresholds]] = []
    for i, (text, t) in enumerate(zip(texts, limits, strict=True)):
        classes = None if text.isascii() else _char_classes(text)
        doc = _Doc(text, _words(text, classes), [line.strip() for line in text.splitlines() if line.strip()],
                   classes)
        verdicts.append((_word_rules(doc, t) or _character_rules(doc, t) or _line_rules(doc, t), len(doc.words)))
        if verdicts[-1][0] is None and len(doc.words) >= t.min_words_for_ngram_rules:
            waiting.append((i, doc.words, t))
    for i, reason in zip((i for i, _, _ in waiting), _ngram_verdicts([(w, t) for _, w, t in waiting]), strict=True):
        verdicts[i] = (reason, verdicts[i][1])
    return verdicts


def count_words(text: str) -> int:
    """Unicode words of ``text``, as the rules count them (see the module docstring)."""
    return len(_words(text, None if text.isascii() else _char_classes(text)))


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
    return _ngram_verdicts([(doc.words, t)])[0]


def _ngram_verdicts(docs: Sequence[tuple[list[str], FilterThresholds]]) -> list[str | None]:
    """The first n-gram rule each document (its words and thresholds) fails, or None.

    Each document's rules run in its own order (top n-grams by n, then duplicate n-grams by n), all documents
    still undecided at a rule together. Words inside repeated (n+1)-grams are inside repeated n-grams, so the
    duplicate share only falls as n grows: once it is within every later limit, the later rules pass and need
    no pass of their own."""
    verdicts: list[str | None] = [None] * len(docs)
    if not docs:
        return verdicts
    ids, lengths = _encode([word for w, _ in docs for word in w], casefold=True)  # casefolded once for every n
    doc_of = np.repeat(np.arange(len(docs)), [len(w) for w, _ in docs])
    steps = sorted({("top", n) for _, t in docs for n in (t.max_top_ngram or {})}) + \
        sorted({("duplicate", n) for _, t in docs for n in (t.max_duplicate_ngrams or {})})
    undecided = set(range(len(docs)))
    for kind, n in steps:
        rules = [(d, (docs[d][1].max_top_ngram if kind == "top" else docs[d][1].max_duplicate_ngrams) or {})
                 for d in sorted(undecided)]
        rules = [(d, limits) for d, limits in rules if n in limits]
        if not rules:
            continue
        chosen = np.array([d for d, _ in rules])
        keep = np.isin(doc_of, chosen)
        shares = (_top_shares if kind == "top" else _duplicate_shares)(
            ids[keep], lengths[keep], np.searchsorted(chosen, doc_of[keep]), len(chosen), n)
        for (d, limits), share in zip(rules, shares.tolist(), strict=True):
            if share > limits[n]:
                verdicts[d] = f"max_{kind}_ngram{'s' if kind == 'duplicate' else ''}_{n}"
                undecided.discard(d)
            elif kind == "duplicate" and share <= min((v for m, v in limits.items() if m > n), default=1.0):
                undecided.discard(d)
    return verdicts


_DOCUMENT_MIX = np.uint64(0x9E3779B97F4A7C15)


def _ngram_groups(ids: np.ndarray, doc_of: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The word n-grams of several documents (ids concatenated, ``doc_of``: each word's document, in order),
    none across two documents, grouped by (document, n-gram): each group's first start position and size, and
    each n-gram's start position whose occurrence is not its group's first."""
    if len(ids) < n:
        empty = np.zeros(0, np.int64)
        return empty, empty, empty
    keys = _ngram_keys(ids, n)
    inside = np.flatnonzero(doc_of[: len(keys)] == doc_of[n - 1 :])
    with np.errstate(over="ignore"):
        keys = keys[inside] * _DOCUMENT_MIX + doc_of[inside].astype(np.uint64)  # one key per (document, n-gram)
    _, group, counts = np.unique(keys, return_inverse=True, return_counts=True)  # (no stable sort needed)
    first = np.full(len(counts), len(keys))
    np.minimum.at(first, group, np.arange(len(keys)))
    later = np.ones(len(keys), dtype=bool)
    later[first] = False
    return inside[first], counts, inside[later]


def _top_shares(ids: np.ndarray, lengths: np.ndarray, doc_of: np.ndarray, docs: int, n: int) -> np.ndarray:
    """:func:`_top_share` of each document."""
    firsts, counts, _ = _ngram_groups(ids, doc_of, n)
    shares = np.zeros(docs)
    if not len(firsts):
        return shares
    group_doc = doc_of[firsts]
    best = np.zeros(docs, dtype=np.int64)
    np.maximum.at(best, group_doc, counts)
    tied = counts == best[group_doc]
    start = np.full(docs, len(ids), dtype=np.int64)
    np.minimum.at(start, group_doc[tied], firsts[tied])  # of the most frequent n-grams, the first in the text
    has = start < len(ids)
    ends = np.concatenate([[0], np.cumsum(lengths)])
    shares[has] = best[has] * (ends[start[has] + n] - ends[start[has]])
    return shares / np.maximum(np.bincount(doc_of, weights=lengths, minlength=docs), 1)


def _duplicate_shares(ids: np.ndarray, lengths: np.ndarray, doc_of: np.ndarray, docs: int, n: int) -> np.ndarray:
    """:func:`_duplicate_share` of each document."""
    repeated = _ngram_groups(ids, doc_of, n)[2]  # every occurrence of an n-gram but its first
    cover = np.zeros(len(ids) + 1, dtype=np.int64)
    cover[repeated] += 1  # distinct starts, and distinct starts + n: plain fancy indexing adds correctly
    cover[repeated + n] -= 1
    covered = np.cumsum(cover[:-1]) > 0
    totals = np.bincount(doc_of, weights=lengths, minlength=docs)
    return np.bincount(doc_of, weights=lengths * covered, minlength=docs) / np.maximum(totals, 1)
