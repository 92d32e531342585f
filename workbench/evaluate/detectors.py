"""What BLEU hides: per-sentence failure detectors for translations, and their rates.

Each detector looks at one output sentence and returns a :class:`Detection` (a flag and the value
it measured). A flag is ``None`` when the sentence cannot be judged (e.g. too short to identify its
language); rates are taken over judged sentences only.

============  ==========================================================================  =========
detector      flags a hypothesis that ...                                                  value
============  ==========================================================================  =========
empty         has no letter or digit (empty, whitespace or punctuation only)               letters+digits
script_leak   has more than ``script_leak`` of its letters outside the target's script     that share
copy          copies the source (normalised equal, or similarity >= ``copy_similarity``)    similarity
repetition    repeats a word 1-4-gram >= ``repeat_run`` times in a row, or (from           longest run
              ``min_words_distinct`` words on) has < ``min_distinct_trigrams`` distinct
              word 3-grams
off_target    is, by a language identifier, another language (top score >= ``off_target``)  top score
============  ==========================================================================  =========

Scripts come from the Unicode Script property (the ``regex`` module's ``\\p{sc=...}``); Common and
Inherited characters (digits, punctuation, symbols, combining marks) are ignored. Words are runs of
letters, marks and digits, except that every character of a script written without spaces (Han,
kana, Thai, Lao, Khmer, Myanmar, Tibetan) is a word of its own.
"""

from __future__ import annotations

import difflib
import threading
import unicodedata
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from ..crawl.langid import LanguageIdentifier, train_identifier
from ..io import tree_fingerprint
from ..text import char_script, normalize_for_matching, target_scripts
from ..text import words as text_words

DETECTORS = ("empty", "script_leak", "copy", "repetition", "off_target")


class Detection(NamedTuple):
    """A detector's verdict: ``flag`` (None = not judged), the measured ``value``, an optional ``label``."""

    flag: bool | None
    value: float | None
    label: str | None = None


@dataclass(frozen=True)
class DetectorConfig:
    """Thresholds of the detectors (see the module docstring)."""

    script_leak: float = 0.1  # flag if more than this share of letters is in a foreign script
    copy_similarity: float = 0.8  # flag if difflib similarity to the source is at least this
    repeat_run: int = 4  # flag if a word n-gram (n = 1..max_repeat_n) occurs this many times in a row
    max_repeat_n: int = 4
    min_words_distinct: int = 12  # outputs of at least this many words ...
    min_distinct_trigrams: float = 0.5  # ... are flagged if fewer word 3-grams than this share are distinct
    off_target: float = 0.5  # flag if the identifier's top language is not the target with this score
    min_chars_langid: int = 20  # shorter outputs (stripped) are not identified (flag None)


# --------------------------------------------------------------------------- detectors

def words(text: str) -> list[str]:
    """Casefolded words (characters with their marks, for scripts written without spaces)."""
    return text_words(text, casefold=True)


def _normalise(text: str) -> str:
    return normalize_for_matching(text)


def detect_empty(hypothesis: str) -> Detection:
    """Flag a hypothesis without any letter or digit; value = number of letters and digits."""
    count = sum(unicodedata.category(c)[0] in "LN" for c in hypothesis)
    return Detection(count == 0, float(count))


def detect_script_leak(hypothesis: str, tgt: str, threshold: float = 0.1) -> Detection:
    """Share of letters whose script is not the target's; ``None`` without letters or for an unknown
    target script. The label is the most frequent foreign script."""
    allowed = target_scripts(tgt)
    scripts = [s for s in map(char_script, hypothesis) if s is not None]
    if allowed is None or not scripts:
        return Detection(None, None)
    foreign = [s for s in scripts if s not in allowed]
    share = len(foreign) / len(scripts)
    label = Counter(foreign).most_common(1)[0][0] if foreign else None
    return Detection(share > threshold, share, label)


def detect_copy(source: str, hypothesis: str, src: str, tgt: str, threshold: float = 0.8) -> Detection:
    """Similarity (difflib ratio of the casefolded, whitespace-collapsed texts, 1.0 if equal) of the
    hypothesis to the source; ``None`` if source and target are the same language code or either is empty."""
    a, b = _normalise(source), _normalise(hypothesis)
    if src == tgt or not a or not b:
        return Detection(None, None)
    similarity = 1.0 if a == b else difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()
    return Detection(similarity >= threshold, similarity)


def longest_run(tokens: list[str], max_n: int = 4) -> int:
    """The most consecutive copies of any token n-gram (n = 1..max_n) in ``tokens`` (1 if none repeats).

    ``s`` positions in a row with ``tokens[i] == tokens[i + n]`` span ``s // n + 1`` copies of an n-gram.
    """
    best = 1 if tokens else 0
    for n in range(1, max_n + 1):
        streak = 0
        for i in range(len(tokens) - n):
            streak = streak + 1 if tokens[i] == tokens[i + n] else 0
            best = max(best, streak // n + 1)
    return best


def detect_repetition(hypothesis: str, config: DetectorConfig = DetectorConfig()) -> Detection:
    """Degenerate repetition; value = :func:`longest_run` of the words."""
    tokens = words(hypothesis)
    run = longest_run(tokens, config.max_repeat_n)
    flag = run >= config.repeat_run
    if not flag and len(tokens) >= config.min_words_distinct:
        trigrams = list(zip(tokens, tokens[1:], tokens[2:], strict=False))
        flag = len(set(trigrams)) / len(trigrams) < config.min_distinct_trigrams
    return Detection(flag, float(run))


def detect_off_target(
    hypothesis: str,
    tgt: str,
    identifier: LanguageIdentifier | None,
    threshold: float = 0.5,
    min_chars: int = 20,
) -> Detection:
    """Flag when the identifier's top language is not ``tgt`` with a score >= ``threshold``; value =
    that score, label = that language. ``None`` without identifier, for outputs shorter than
    ``min_chars`` (stripped) and when the identifier has no idea."""
    text = " ".join(hypothesis.split())
    if identifier is None or len(text) < min_chars:
        return Detection(None, None)
    prediction = identifier.predict(text)
    if not prediction:
        return Detection(None, None)
    code, score = prediction[0]
    return Detection(code != tgt and score >= threshold, float(score), code)


def detect(
    source: str,
    hypothesis: str,
    src: str,
    tgt: str,
    identifier: LanguageIdentifier | None = None,
    config: DetectorConfig = DetectorConfig(),
) -> dict[str, Detection]:
    """Every detector on one translation, keyed by :data:`DETECTORS` names."""
    return {
        "empty": detect_empty(hypothesis),
        "script_leak": detect_script_leak(hypothesis, tgt, config.script_leak),
        "copy": detect_copy(source, hypothesis, src, tgt, config.copy_similarity),
        "repetition": detect_repetition(hypothesis, config),
        "off_target": detect_off_target(hypothesis, tgt, identifier, config.off_target, config.min_chars_langid),
    }


def flags(
    source: str,
    hypothesis: str,
    src: str,
    tgt: str,
    identifier: LanguageIdentifier | None = None,
    config: DetectorConfig = DetectorConfig(),
) -> dict[str, bool | None]:
    """``{detector: flag}`` for one translation (``None``: not judged). See :func:`detect` for values."""
    return {name: d.flag for name, d in detect(source, hypothesis, src, tgt, identifier, config).items()}


# --------------------------------------------------------------------------- rates

def detector_records(
    rows: Iterable[dict[str, Any]], *, stage: str, variant: str | None, direction: str
) -> list[dict[str, Any]]:
    """Scoreboard records ``<detector>_rate`` (share of judged sentences flagged, ``n`` = judged) from
    translation rows carrying a ``flags`` dict. Rows of another ``direction`` are left out; a detector
    that judged no sentence gives no record."""
    judged: dict[str, list[bool]] = {}
    for row in rows:
        if row.get("direction", direction) != direction:
            continue
        for name, flag in (row.get("flags") or {}).items():
            if flag is not None:
                judged.setdefault(name, []).append(bool(flag))
    order = [*DETECTORS, *sorted(set(judged) - set(DETECTORS))]
    return [
        {"stage": stage, "variant": variant, "kind": "detector", "direction": direction,
         "metric": f"{name}_rate", "value": sum(judged[name]) / len(judged[name]), "n": len(judged[name])}
        for name in order
        if judged.get(name)
    ]


# --------------------------------------------------------------------------- identifier

_IDENTIFIERS: dict[tuple[str, bool], LanguageIdentifier] = {}
_IDENTIFIERS_LOCK = threading.Lock()


def load_identifier(seed_dir: Path, *, use_fasttext: bool = True) -> LanguageIdentifier:
    """:func:`~workbench.crawl.langid.train_identifier` on every seed file of ``seed_dir``, trained
    once per process for a given content of the directory (cached by its fingerprint)."""
    key = (tree_fingerprint(Path(seed_dir)), use_fasttext)
    with _IDENTIFIERS_LOCK:
        if key not in _IDENTIFIERS:
            _IDENTIFIERS[key] = train_identifier(Path(seed_dir), use_fasttext=use_fasttext)
        return _IDENTIFIERS[key]
