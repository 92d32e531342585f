"""Frequent words of a language, for trim mode: keeping their base pieces keeps the language working beyond
the sentences of its corpus (a trimmed tokenizer is exact on its corpora only; any other word falls back to
shorter pieces, and the model reads that text worse).

Word lists come from the ``wordfreq`` package (about 40 languages, offline; data CC BY-SA 4.0; install the
``wordlists`` extra). Any other list works too: :func:`word_forms` takes plain words.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import regex

from ..optional import require
from ..text import UNSPACED_CHAR

MAX_DISTANCE = 9
"""Largest langcodes distance accepted between a requested language and a wordfreq list (same language;
wordfreq's own lookup would otherwise answer e.g. Amharic with English)."""


def wordfreq_language(code: str) -> str | None:
    """The wordfreq list for a language code (``eng_Latn``, ``en``, ``zho_Hans``), or None when it has none."""
    langcodes = require("langcodes", "matching a language to a wordfreq list")
    wordfreq = require("wordfreq", "matching a language to a wordfreq list")
    available = sorted(wordfreq.available_languages("best"))
    return langcodes.closest_supported_match(code.replace("_", "-"), available, max_distance=MAX_DISTANCE)


def _wordfreq(purpose: str) -> Any:
    return require("wordfreq", purpose)


def _script(code: str) -> str | None:
    return code.split("_", 1)[1] if "_" in code else None


def top_words(code: str, n: int) -> list[str]:
    """The ``n`` most frequent words of language ``code`` (empty when wordfreq has no list for it).

    Words in another script than the code's (``srp_Cyrl`` gets the Latin-script Serbo-Croatian list) are
    dropped.
    """
    if n <= 0:
        return []
    wordfreq = _wordfreq("keeping frequent words (keep_words)")
    language = wordfreq_language(code)
    if language is None:
        return []
    return [w for w in wordfreq.top_n_list(language, n, wordlist="best") if _in_script(w, _script(code))]


def _in_script(word: str, script: str | None) -> bool:
    if script is None:
        return True
    try:
        return regex.fullmatch(rf"[\p{{Script_Extensions={script}}}\p{{Common}}\p{{Inherited}}]+", word) is not None
    except regex.error:  # a script code regex does not know (Hans, Jpan, ...): no filter
        return True


UNSPACED = regex.compile(UNSPACED_CHAR)
"""Scripts written without spaces between words: there a word's bare form is the common one."""


def weighted_forms(word: str) -> list[tuple[str, float]]:
    """How a word appears in text, each form with its share of the word's frequency: `` word`` (0.7, inside
    a sentence), ``Word`` (0.1, starting one) and `` Word`` (0.2) for scripts with case; `` word`` and the bare
    ``word`` otherwise, 0.9 to the usual one (the bare form in :data:`UNSPACED` scripts). wordfreq counts are
    casefolded, and mid-sentence lowercase is the common form. Lowercase forms without the word-initial
    marker are left out where there is case: they are rare in text and cost many rows (measured on Gemma-3
    with 10k English words: +4.5k rows for 0.3% fewer tokens on FLORES)."""
    capital = word[:1].upper() + word[1:]
    if capital != word:
        return [(" " + word, 0.7), (capital, 0.1), (" " + capital, 0.2)]
    bare = 0.9 if UNSPACED.match(word) else 0.1  # Chinese, Japanese, Thai...: words run on without spaces
    return [(" " + word, 1.0 - bare), (word, bare)]


def word_forms(words: Iterable[str]) -> list[str]:
    """Every form of each word (:func:`weighted_forms`)."""
    return [form for word in words for form, _ in weighted_forms(word)]


def keep_words(languages: Iterable[str], n: int) -> tuple[list[str], dict[str, Any]]:
    """The word forms of the ``n`` most frequent words of each language, and per-language counts."""
    forms: list[str] = []
    counts: dict[str, Any] = {}
    for code in languages:
        found = top_words(code, n)
        counts[code] = len(found)
        forms += word_forms(found)
    return forms, counts


def word_weights(languages: Iterable[str]) -> tuple[dict[str, float], dict[str, Any]]:
    """Every word form of each language's whole wordfreq list, weighted by the word's frequency
    (:func:`weighted_forms`; each language's weights sum to about 1, so languages count alike), and the
    per-language word counts.

    A row budget filled from these (:func:`~.vocab.fill_by_weight`) keeps the pieces the languages use most,
    rare words' subwords included. Languages without a list add nothing.
    """
    wordfreq = _wordfreq("filling a trim budget (trim_rows)")
    weights: dict[str, float] = {}
    counts: dict[str, Any] = {}
    for code in languages:
        language = wordfreq_language(code)
        words = {} if language is None else {
            w: f for w, f in wordfreq.get_frequency_dict(language, wordlist="best").items()
            if _in_script(w, _script(code))}
        total = sum(words.values()) or 1.0
        counts[code] = len(words)
        for word, frequency in words.items():
            for form, share in weighted_forms(word):
                weights[form] = weights.get(form, 0.0) + share * frequency / total
    return weights, counts


def trim_words(languages: Iterable[str], keep: int, fill: bool) -> tuple[list[str], dict[str, float], dict[str, Any]]:
    """What trim takes from word lists (the stage and ``workbench transplant`` alike): the forms of each
    language's ``keep`` most frequent words (:func:`keep_words`), the weighted forms that fill a row budget
    when ``fill`` (:func:`word_weights`), and the per-language word counts (``fill``'s under ``"fill"``)."""
    languages = list(languages)
    forms, counts = keep_words(languages, keep) if keep else ([], {})
    weights: dict[str, float] = {}
    if fill:
        weights, fill_counts = word_weights(languages)
        counts = {**counts, "fill": fill_counts}
    return forms, weights, counts
