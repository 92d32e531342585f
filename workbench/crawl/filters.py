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
``min_letter_ratio``        share of non-space characters that are letters (marks included) is below  0.6
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

from ..schema import StrictModel
from ..text import NOT_UNSPACED_CHAR, WORD_CHAR_CLASS, WORD_PATTERN
from .dedup import run_hashes

_WORD = regex.compile(WORD_PATTERN)
# bits of a character's class, and the characters outside each class
_LETTER, _UNSPACED_CHAR, _MARK = 1, 2, 4
_NOT_IN_CLASS = ((_LETTER, regex.compile(r"\P{L}")), (_UNSPACED_CHAR, regex.compile(NOT_UNSPACED_CHAR)),
                 (_MARK, regex.compile(r"\P{M}")))
_RE_DIFFERS = 8  # `re` (Python's Unicode version) and `regex` disagree on whether it is a letter or digit
_LETTERISH = _LETTER | _UNSPACED_CHAR | _MARK | _RE_DIFFERS  # a word without any of these has no letter
_WORD_CHAR = 16  # a letter, mark or digit (``[\p{L}\p{M}\p{N}]``): what words are runs of
_SPACE = 32  # str.isspace
_FOLD_CHANGES_KIND = 64  # casefolding turns it into characters of another kind (none in Unicode 15)
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
    table[1:][_codepoints(_NOT_WORD_CHAR.sub("\x00", chars)) != 0] |= _WORD_CHAR
    table[[ord(c) for c in chars if c.isspace()]] |= _SPACE
    table[[ord(c) for c in chars if c.casefold() != c and _fold_changes_kind(c)]] |= _FOLD_CHANGES_KIND
    return table


_NOT_WORD_CHAR = regex.compile(f"[^{WORD_CHAR_CLASS}]")


def _kind(char: str) -> int:
    """The unspaced-script and word-character bits of ``char``, from the regexes themselves."""
    unspaced = 0 if _NOT_IN_CLASS[1][1].match(char) else _UNSPACED_CHAR
    return unspaced | (0 if _NOT_WORD_CHAR.match(char) else _WORD_CHAR)


def _fold_changes_kind(char: str) -> bool:
    """Whether casefolding ``char`` changes a character of an unspaced script, or gives characters of another kind
    than ``char`` (:func:`_kind`). No character does in Unicode 15; one that did would make the words of a
    casefolded text differ from the casefolded words of the text."""
    folded, kind = char.casefold(), _kind(char)
    if kind & _UNSPACED_CHAR:
        return folded != char
    return any(_kind(c) != kind for c in folded)


@lru_cache(maxsize=4096)
def _class_of(char: str) -> int:
    """Class bits of one character (those beyond the Basic Multilingual Plane: emoji, rare Han...)."""
    bits = sum(bit for bit, outside in _NOT_IN_CLASS if not outside.match(char))
    differs = bool(re.match(r"[^\W_]", char)) != bool(regex.match(r"[\p{L}\p{N}]", char))
    bits |= (_RE_DIFFERS if differs else 0) | (0 if _NOT_WORD_CHAR.match(char) else _WORD_CHAR)
    bits |= _SPACE if char.isspace() else 0
    if char.casefold() != char and _fold_changes_kind(char):
        bits |= _FOLD_CHANGES_KIND
    return bits


def _codepoints(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)


def _char_classes(text: str) -> np.ndarray:
    """Class bits (letter, unspaced script, mark, engines disagree, word character, space, casefolding changes its
    kind) of every character of ``text``."""
    return _classes(_codepoints(text))


def _classes(codepoints: np.ndarray) -> np.ndarray:
    """:func:`_char_classes` of code points."""
    astral = codepoints >= 0x10000
    if not astral.any():
        return _bmp_classes()[codepoints]
    out = np.empty(len(codepoints), dtype=np.uint8)
    out[~astral] = _bmp_classes()[codepoints[~astral]]
    distinct, inverse = np.unique(codepoints[astral], return_inverse=True)
    out[astral] = np.array([_class_of(chr(c)) for c in distinct.tolist()], dtype=np.uint8)[inverse]
    return out


def word_spans(classes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r"""Start and end positions of the words (see the module docstring) in characters of these ``classes``: what
    ``_WORD`` (``[unspaced]\p{M}*|[\p{L}\p{M}\p{N}]+``) matches, found in numpy. A match that begins at a character
    of an unspaced script is that character with the combining marks right after it; one that begins at another
    word character runs to the end of its run of word characters (unspaced characters included, as the regex
    does)."""
    word = (classes & _WORD_CHAR) != 0
    edges = np.diff(word.view(np.int8), prepend=np.int8(0), append=np.int8(0))
    run_starts, run_ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    unspaced = np.flatnonzero(classes & _UNSPACED_CHAR)
    if not len(unspaced):
        return run_starts, run_ends
    if not len(run_starts):  # unspaced characters that are no letter, mark or digit: a word each
        return unspaced, unspaced + 1
    run = np.searchsorted(run_starts, unspaced, side="right") - 1  # the run an unspaced character may be in
    inside = (run >= 0) & (unspaced < run_ends[np.maximum(run, 0)])
    alone = unspaced[~inside]  # an unspaced character that is no letter, mark or digit: a word of its own ...
    if len(alone) and np.isin(alone + 1, run_starts).any() and (classes[np.minimum(alone + 1, len(classes) - 1)]
                                                                 & _MARK).any():
        return _word_spans_by_scan(classes)  # ... unless marks follow it (rare): they are its marks
    split = np.unique(run[inside])  # runs that hold unspaced characters: the only ones that are not one word
    whole = np.ones(len(run_starts), dtype=bool)
    whole[split] = False
    starts, ends = [run_starts[whole], alone], [run_ends[whole], alone + 1]
    if len(split):
        head_starts, rest_starts = _split_runs(classes, run_starts[split], run_ends[split])
        boundaries = np.sort(np.concatenate((head_starts, np.minimum(rest_starts, run_ends[split]))))
        starts += [head_starts, rest_starts[rest_starts < run_ends[split]]]
        ends += [boundaries[np.searchsorted(boundaries, head_starts, side="right")],
                 run_ends[split][rest_starts < run_ends[split]]]
    starts_all, ends_all = np.concatenate(starts), np.concatenate(ends)
    order = np.argsort(starts_all)
    return starts_all[order], ends_all[order]


def _split_runs(classes: np.ndarray, begins: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, ...]:
    """Words of runs of word characters that hold unspaced characters: where each word of a run's head begins (an
    unspaced character, its marks after it), and where each run's rest begins (its first other character, which
    starts a word lasting to the end of the run; the run's end if there is none)."""
    lengths = ends - begins
    offsets = np.cumsum(lengths) - lengths
    positions = np.arange(lengths.sum()) - np.repeat(offsets - begins, lengths)  # their characters
    kinds = classes[positions]
    is_unspaced, is_mark = (kinds & _UNSPACED_CHAR) != 0, (kinds & _MARK) != 0
    run_start = np.zeros(len(positions), dtype=bool)
    run_start[offsets] = True
    # a mark is absorbed by the unspaced character before it (marks in between): find each one's anchor, the
    # last position at or before it that is no mark or begins its run
    anchor = np.maximum.accumulate(np.where(~is_mark | run_start, np.arange(len(positions)), 0))
    absorbed = is_mark & ~run_start & is_unspaced[anchor] & (anchor != np.arange(len(positions)))
    spaced = ~is_unspaced & ~absorbed
    first_spaced = np.minimum.reduceat(np.where(spaced, positions, np.iinfo(np.int64).max), offsets)
    head = positions < np.repeat(first_spaced, lengths)
    return positions[head & ~absorbed], first_spaced


def _word_spans_by_scan(classes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`word_spans` one character at a time (the regex's own steps), for the rare texts it does not cover."""
    starts, ends, i, n = [], [], 0, len(classes)
    kinds = classes.tolist()
    while i < n:
        kind = kinds[i]
        if kind & _UNSPACED_CHAR:
            j = i + 1
            while j < n and kinds[j] & _MARK:
                j += 1
        elif kind & _WORD_CHAR:
            j = i + 1
            while j < n and kinds[j] & _WORD_CHAR:
                j += 1
        else:
            i += 1
            continue
        starts.append(i)
        ends.append(j)
        i = j
    return np.array(starts, dtype=np.int64), np.array(ends, dtype=np.int64)


@dataclass
class _Measures:
    """What the word and character rules read of each text of a batch, measured in one numpy pass over all of
    them (lists of ints, one per text), and where each text's words are."""

    words: list[int]
    word_chars: list[int]  # characters inside words
    unspaced: list[int]  # characters of unspaced scripts
    letters: list[int]
    visible: list[int]  # characters that are not spaces
    no_letter_words: list[int]  # words without a letter, mark or unspaced character (numbers...)
    classes: np.ndarray  # of the texts joined by NULs
    word_starts: np.ndarray  # of every word, in the joined texts
    word_ends: np.ndarray
    word_text: np.ndarray  # the text each word is in


def measure(texts: Sequence[str]) -> _Measures:
    """:class:`_Measures` of ``texts``."""
    codes = _codepoints("\x00".join(texts))  # NUL is in no class: no word runs from one text into the next
    classes = _classes(codes)
    lengths = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
    begins = np.cumsum(lengths + 1) - lengths - 1
    starts, ends = word_spans(classes)
    word_text = np.searchsorted(begins, starts, side="right") - 1

    padded = np.concatenate((classes, np.zeros(1, dtype=np.uint8)))  # (a last text may be empty)

    def per_text(bits: int) -> np.ndarray:  # how many characters of each text have one of these class bits
        return np.add.reduceat((padded & bits) != 0, begins, dtype=np.int64)  # (the NULs have no bit)

    bounds = np.empty(2 * len(starts), dtype=np.int64)
    bounds[0::2], bounds[1::2] = starts, ends  # each word's characters, then those up to the next word
    lettered = np.logical_or.reduceat((padded & _LETTERISH) != 0, bounds)[0::2] if len(bounds) else bounds
    no_letter = ~lettered.astype(bool)
    return _Measures(
        words=np.bincount(word_text, minlength=len(texts)).tolist(),
        word_chars=per_text(_WORD_CHAR | _UNSPACED_CHAR).tolist(),
        unspaced=per_text(_UNSPACED_CHAR).tolist(),
        letters=per_text(_LETTER | _MARK).tolist(),  # a combining mark is part of its letter
        visible=(lengths - per_text(_SPACE)).tolist(),
        no_letter_words=np.bincount(word_text[no_letter], minlength=len(texts)).tolist(),
        classes=classes, word_starts=starts, word_ends=ends, word_text=word_text)


def words_of(text: str) -> list[str]:
    """The words of ``text`` (see the module docstring)."""
    starts, ends = word_spans(_char_classes(text))
    return [text[a:b] for a, b in zip(starts.tolist(), ends.tolist(), strict=True)]


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
    """:func:`check_many`, with each text's word count (:func:`count_words`, found on the way). The word and
    character measures of all the texts come from one numpy pass (:func:`measure`)."""
    found = measure(texts)
    verdicts: list[tuple[str | None, int]] = []
    waiting: list[int] = []
    counts = zip(found.words, found.word_chars, found.unspaced, found.no_letter_words, found.letters, found.visible,
                 strict=True)
    for i, (text, t, (n, chars, unspaced, no_letter, letters, visible)) in enumerate(
            zip(texts, limits, counts, strict=True)):
        rule = (_word_rules(n, chars, unspaced, no_letter, t) or _character_rules(text, n, letters, visible, t)
                or _line_rules([stripped for line in text.splitlines() if (stripped := line.strip())], t))
        verdicts.append((rule, n))
        if rule is None and n >= t.min_words_for_ngram_rules:
            waiting.append(i)
    if waiting:
        ids, lengths, word_doc = _folded_word_ids(texts, found, waiting)
        for i, reason in zip(waiting, _ngram_verdicts_of(ids, lengths, word_doc, [limits[i] for i in waiting]),
                             strict=True):
            verdicts[i] = (reason, verdicts[i][1])
    return verdicts


def _folded_word_ids(texts: Sequence[str], found: _Measures, chosen: list[int]
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ids and lengths of the casefolded words of the ``chosen`` texts (as :func:`_encode` gives them) and the
    position in ``chosen`` of each word's text. The words of the casefolded texts are the casefolded words
    (:func:`_fold_changes_kind`), so they are found in the casefolded texts, with no string per word."""
    is_chosen = np.zeros(len(texts), dtype=bool)
    is_chosen[chosen] = True
    keep = is_chosen[found.word_text]
    expected = np.bincount(found.word_text[keep], minlength=len(texts))[chosen]
    if not (found.classes & _FOLD_CHANGES_KIND).any():
        folded = [texts[i].casefold() for i in chosen]
        codes = _codepoints("\x00".join(folded))
        starts, ends = word_spans(_classes(codes))
        lengths = np.fromiter(map(len, folded), dtype=np.int64, count=len(chosen))
        begins = np.cumsum(lengths + 1) - lengths - 1
        word_doc = np.searchsorted(begins, starts, side="right") - 1
        if np.array_equal(np.bincount(word_doc, minlength=len(chosen)), expected):
            return run_hashes(codes, starts, ends), ends - starts, word_doc
    joined = "\x00".join(texts)  # the general way: a string per word (a character whose casefold changes kind)
    words = [joined[a:b] for a, b in zip(found.word_starts[keep].tolist(), found.word_ends[keep].tolist(),
                                        strict=True)]
    ids, lengths = _encode(words, casefold=True)
    return ids, lengths, np.repeat(np.arange(len(chosen)), expected)


def count_words(text: str) -> int:
    """Unicode words of ``text``, as the rules count them (see the module docstring)."""
    return len(word_spans(_char_classes(text))[0])


def _word_rules(n: int, word_chars: int, unspaced: int, no_letter: int, t: FilterThresholds) -> str | None:
    if t.min_words is not None and n < t.min_words:
        return "min_words"
    if t.max_words is not None and n > t.max_words:
        return "max_words"
    if not n:
        return None
    spaced = n - unspaced
    if t.mean_word_length is not None and spaced >= max(1, n // 2):
        mean = (word_chars - unspaced) / spaced
        if not t.mean_word_length[0] <= mean <= t.mean_word_length[1]:
            return "mean_word_length"
    if t.min_alpha_words is not None and (n - no_letter) / n < t.min_alpha_words:
        return "min_alpha_words"
    return None


def _character_rules(text: str, n: int, letters: int, visible: int, t: FilterThresholds) -> str | None:
    if t.min_letter_ratio is not None and visible and letters / visible < t.min_letter_ratio:
        return "min_letter_ratio"
    if t.max_symbol_ratio is not None and n:
        symbols = text.count("#") + text.count("…") + text.count("...")
        if symbols / n > t.max_symbol_ratio:
            return "max_symbol_ratio"
    return None


def _line_rules(lines: list[str], t: FilterThresholds) -> str | None:
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


def _ngram_verdicts(docs: Sequence[tuple[list[str], FilterThresholds]]) -> list[str | None]:
    """The first n-gram rule each document (its words and thresholds) fails, or None.

    Each document's rules run in its own order (top n-grams by n, then duplicate n-grams by n), all documents
    still undecided at a rule together. Words inside repeated (n+1)-grams are inside repeated n-grams, so the
    duplicate share only falls as n grows: once it is within every later limit, the later rules pass and need
    no pass of their own."""
    if not docs:
        return []
    ids, lengths = _encode([word for w, _ in docs for word in w], casefold=True)  # casefolded once for every n
    doc_of = np.repeat(np.arange(len(docs)), [len(w) for w, _ in docs])
    return _ngram_verdicts_of(ids, lengths, doc_of, [t for _, t in docs])


def _ngram_verdicts_of(ids: np.ndarray, lengths: np.ndarray, doc_of: np.ndarray,
                       limits: Sequence[FilterThresholds]) -> list[str | None]:
    """:func:`_ngram_verdicts` of documents given by their casefolded word ids and lengths (:func:`_encode`)
    and each word's document (in order)."""
    verdicts: list[str | None] = [None] * len(limits)
    steps = sorted({("top", n) for t in limits for n in (t.max_top_ngram or {})}) + \
        sorted({("duplicate", n) for t in limits for n in (t.max_duplicate_ngrams or {})})
    undecided = set(range(len(limits)))
    for kind, n in steps:
        rules = [(d, (limits[d].max_top_ngram if kind == "top" else limits[d].max_duplicate_ngrams) or {})
                 for d in sorted(undecided)]
        rules = [(d, rule) for d, rule in rules if n in rule]
        if not rules:
            continue
        position = np.full(len(limits), -1)  # each chosen document's position among the chosen, others -1
        position[[d for d, _ in rules]] = np.arange(len(rules))
        if len(rules) == len(limits):
            keep, chosen_of = slice(None), position[doc_of]
        else:
            chosen_of = position[doc_of]
            keep = chosen_of >= 0
            chosen_of = chosen_of[keep]
        shares = (_top_shares if kind == "top" else _duplicate_shares)(
            ids[keep], lengths[keep], chosen_of, len(rules), n)
        for (d, rule), share in zip(rules, shares.tolist(), strict=True):
            if share > rule[n]:
                verdicts[d] = f"max_{kind}_ngram{'s' if kind == 'duplicate' else ''}_{n}"
                undecided.discard(d)
            elif kind == "duplicate" and share <= min((v for m, v in rule.items() if m > n), default=1.0):
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
    order = np.argsort(keys)  # (no stable sort needed: each group's first position is its least)
    ordered = keys[order]
    starts = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1])))  # where each group starts
    counts = np.diff(np.append(starts, len(keys)))
    first = np.minimum.reduceat(order, starts) if len(starts) else starts
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
