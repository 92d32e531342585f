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

from ..errors import DataError

MAX_DISTANCE = 9
"""Largest langcodes distance accepted between a requested language and a wordfreq list (same language;
wordfreq's own lookup would otherwise answer e.g. Amharic with English)."""


def wordfreq_language(code: str) -> str | None:
    """The wordfreq list for a language code (``eng_Latn``, ``en``, ``zho_Hans``), or None when it has none."""
    import langcodes
    import wordfreq

    available = sorted(wordfreq.available_languages("best"))
    return langcodes.closest_supported_match(code.replace("_", "-"), available, max_distance=MAX_DISTANCE)


def top_words(code: str, n: int) -> list[str]:
    """The ``n`` most frequent words of language ``code`` (empty when wordfreq has no list for it).

    Words in another script than the code's (``srp_Cyrl`` gets the Latin-script Serbo-Croatian list) are
    dropped.
    """
    if n <= 0:
        return []
    try:
        import wordfreq
    except ImportError:
        raise DataError("keeping frequent words needs the wordfreq package: pip install 'workbench[wordlists]' "
                        "(or set keep_words to 0)") from None
    language = wordfreq_language(code)
    if language is None:
        return []
    listed = wordfreq.top_n_list(language, n, wordlist="best")
    script = code.split("_", 1)[1] if "_" in code else None
    return [w for w in listed if _in_script(w, script)]


def _in_script(word: str, script: str | None) -> bool:
    if script is None:
        return True
    try:
        return regex.fullmatch(rf"[\p{{Script_Extensions={script}}}\p{{Common}}\p{{Inherited}}]+", word) is not None
    except regex.error:  # a script code regex does not know (Hans, Jpan, ...): no filter
        return True


def word_forms(words: Iterable[str]) -> list[str]:
    """Each word as it starts a word inside a sentence (`` word``) and as it starts a sentence (``Word``,
    ``word`` in scripts without case), plus `` Word`` for scripts with case. Lowercase forms without the
    word-initial marker are left out: they are rare in text and cost many rows (measured on Gemma-3 with
    10k English words: +4.5k rows for 0.3% fewer tokens on FLORES).
    """
    forms: list[str] = []
    for word in words:
        capital = word[:1].upper() + word[1:]
        forms += [" " + word, capital] + ([" " + capital] if capital != word else [])
    return forms


def keep_words(languages: Iterable[str], n: int) -> tuple[list[str], dict[str, Any]]:
    """The word forms of the ``n`` most frequent words of each language, and per-language counts."""
    forms: list[str] = []
    counts: dict[str, Any] = {}
    for code in languages:
        found = top_words(code, n)
        counts[code] = len(found)
        forms += word_forms(found)
    return forms, counts


UNSPACED = regex.compile(r"[\p{Han}\p{Hiragana}\p{Katakana}\p{Thai}\p{Lao}\p{Khmer}\p{Myanmar}\p{Tibetan}]")
"""Scripts written without spaces between words: there a word's bare form is the common one."""

FORM_WEIGHTS = (0.7, 0.2, 0.1)
"""Shares of a word's frequency given to `` word``, `` Word`` and ``Word`` (sentence start) by
:func:`word_weights`: wordfreq counts are casefolded, and mid-sentence lowercase is the common form. Words
without case get 0.9 for their usual form (`` word``; bare in :data:`UNSPACED` scripts) and 0.1 for the other."""


def word_weights(languages: Iterable[str]) -> tuple[dict[str, float], dict[str, Any]]:
    """Every word form of each language's whole wordfreq list, weighted by the word's frequency (each
    language's weights sum to about 1, so languages count alike), and the per-language word counts.

    A row budget filled from these (:func:`~.vocab.fill_by_weight`) keeps the pieces the languages use most,
    rare words' subwords included. Languages without a list add nothing.
    """
    try:
        import wordfreq
    except ImportError:
        raise DataError("filling a trim budget needs the wordfreq package: pip install 'workbench[wordlists]'") \
            from None
    weights: dict[str, float] = {}
    counts: dict[str, Any] = {}
    for code in languages:
        language = wordfreq_language(code)
        if language is None:
            counts[code] = 0
            continue
        script = code.split("_", 1)[1] if "_" in code else None
        words = {w: f for w, f in wordfreq.get_frequency_dict(language, wordlist="best").items()
                 if _in_script(w, script)}
        total = sum(words.values()) or 1.0
        counts[code] = len(words)
        for word, frequency in words.items():
            capital = word[:1].upper() + word[1:]
            if capital != word:
                forms, shares = [" " + word, " " + capital, capital], FORM_WEIGHTS
            elif UNSPACED.match(word):  # Chinese, Japanese, Thai...: words run on without spaces
                forms, shares = [word, " " + word], (0.9, 0.1)
            else:
                forms, shares = [" " + word, word], (0.9, 0.1)
            for form, share in zip(forms, shares, strict=True):
                weights[form] = weights.get(form, 0.0) + share * frequency / total
    return weights, counts
