"""What BLEU hides: per-sentence failure detectors for translations, their rates, and their false-alarm
rates on the human references.

Each detector looks at one output sentence and returns a :class:`Detection` (a flag and the value
it measured). A flag is ``None`` when the sentence cannot be judged (e.g. too short to identify its
language); rates are taken over judged sentences only.

============  ==========================================================================  =============
detector      flags a hypothesis that ...                                                  value
============  ==========================================================================  =============
empty         has no letter or digit (empty, whitespace or punctuation only)               letters+digits
script_leak   has more than ``script_leak`` of its words in a script the target does not   that share
              use
copy          copies the source: normalised equal, difflib similarity >= ``copy_similarity``  the larger
              or >= ``copy_coverage`` of its words in runs of >= ``copy_min_run`` source     measure
              words in source order (a prefix or a chunk of the source is a copy)
repetition    repeats a word 1-4-gram >= ``repeat_run`` times in a row; or (from             longest run
              ``min_words_distinct`` words on) has < ``min_distinct_trigrams`` distinct
              word 3-grams; or (from ``min_chars_repetition`` characters on) repeats
              >= ``repeated_char_share`` of its character ``repeat_char_n``-grams
off_target    is, by a language identifier, another language (top score >= ``off_target``)  top score
              while the target itself scores below ``off_target_target_score``
============  ==========================================================================  =============

Words and scripts come from :mod:`workbench.text` (scripts written without spaces split into characters,
combining marks belong to their letter): a name kept in Latin letters inside a Khmer or Chinese sentence
is one word among many, not a third of the letters.

**Calibration on the references.** :func:`calibrate` runs every detector on the human references of a
direction (the reference as hypothesis, with its source): what a detector flags there is a false alarm.
The language identifier may label true target text as a neighbour (e.g. Maithili as Hindi); the labels
it gives the references are *tolerated* (not off-target) until at most ``max_false_alarm`` of the
references remain flagged, and the detector says which languages it is then blind to.
:func:`reference_records` stores each detector's false-alarm rate per direction and warns above
``max_false_alarm`` (5%).
"""

from __future__ import annotations

import difflib
import logging
import threading
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from ..crawl.langid import LanguageIdentifier, train_identifier
from ..io import tree_fingerprint
from ..text import char_script, normalize_for_matching, target_scripts
from ..text import words as text_words
from .detector_names import (
    COPY,
    DETECTORS,
    EMPTY,
    OFF_TARGET,
    REPETITION,
    SCRIPT_LEAK,
    rate_metric,
    reference_rate_metric,
)

MAX_FALSE_ALARM = 0.05  # a detector flagging more of the human references than this is not trusted

log = logging.getLogger("workbench")


class Detection(NamedTuple):
    """A detector's verdict: ``flag`` (None = not judged), the measured ``value``, an optional ``label``."""

    flag: bool | None
    value: float | None
    label: str | None = None


@dataclass(frozen=True)
class DetectorConfig:
    """Thresholds of the detectors (see the module docstring); each keeps the false alarms on the FLORES dev
    references of 44 languages in 22 scripts at or below 5% (``tests/test_detectors.py``)."""

    script_leak: float = 1 / 3  # flag if more than this share of words is in a foreign script
    copy_similarity: float = 0.8  # flag if difflib similarity to the source is at least this
    copy_coverage: float = 0.5  # ... or if this share of the hypothesis's words is copied in source runs
    copy_min_run: int = 3  # a copied run has at least this many words (characters in unspaced scripts)
    repeat_run: int = 4  # flag if a word n-gram (n = 1..max_repeat_n) occurs this many times in a row
    max_repeat_n: int = 4
    min_words_distinct: int = 12  # outputs of at least this many words ...
    min_distinct_trigrams: float = 0.5  # ... are flagged if fewer word 3-grams than this share are distinct
    min_chars_repetition: int = 30  # outputs of at least this many characters ...
    repeat_char_n: int = 10  # ... are flagged if at least repeated_char_share of their character n-grams
    repeated_char_share: float = 0.4  # occurred earlier in the output (a sentence said twice: about 0.5)
    off_target: float = 0.5  # flag if the identifier's top language is not the target with this score
    off_target_target_score: float = 0.2  # ... and the target itself scores below this
    min_chars_langid: int = 20  # shorter outputs (stripped) are not identified (flag None)
    max_false_alarm: float = MAX_FALSE_ALARM  # calibration: the most of the references a detector may flag


# --------------------------------------------------------------------------- detectors

def words(text: str) -> list[str]:
    """Casefolded words (characters with their marks, for scripts written without spaces)."""
    return text_words(text, casefold=True)


def detect_empty(hypothesis: str) -> Detection:
    """Flag a hypothesis without any letter or digit; value = number of letters and digits."""
    count = sum(unicodedata.category(c)[0] in "LN" for c in hypothesis)
    return Detection(count == 0, float(count))


def word_script(word: str) -> str | None:
    """The script of a word's first letter that has one (``None`` for digits-only words)."""
    return next((s for s in map(char_script, word) if s is not None), None)


def detect_script_leak(hypothesis: str, tgt: str, threshold: float = DetectorConfig.script_leak) -> Detection:
    """Share of words whose script is not the target's; ``None`` without letters or for an unknown
    target script. The label is the most frequent foreign script."""
    allowed = target_scripts(tgt)
    scripts = [s for s in map(word_script, words(hypothesis)) if s is not None]
    if allowed is None or not scripts:
        return Detection(None, None)
    foreign = [s for s in scripts if s not in allowed]
    share = len(foreign) / len(scripts)
    label = Counter(foreign).most_common(1)[0][0] if foreign else None
    return Detection(share > threshold, share, label)


def copied_share(source: str, hypothesis: str, min_run: int = DetectorConfig.copy_min_run,
                 kept_scripts: Iterable[str] = ()) -> float:
    """Share of the hypothesis's word characters that sit in runs of at least ``min_run`` consecutive source
    words, the runs in source order (difflib's matching blocks): 1.0 for a prefix or any chunk of the source,
    about the copied share for a source copied in part. A hypothesis shorter than ``min_run`` words counts if
    it is wholly a run of the source.

    Words weigh their length, so that a Thai or Chinese word (one character) weighs what it holds against a
    copied English word. Numbers are left out, and words in ``kept_scripts`` are never copies (the target's
    own scripts when the source is written in another: a translator keeps a Latin name of a Khmer source).
    """
    source_words, hypothesis_words = words(source), words(hypothesis)
    scripts = [word_script(word) for word in hypothesis_words]
    weights = [0 if script is None else len(word) for word, script in zip(hypothesis_words, scripts, strict=True)]
    if not source_words or not sum(weights):
        return 0.0
    kept = set(kept_scripts)
    copyable = [0 if script in kept else weight for weight, script in zip(weights, scripts, strict=True)]
    run = min(min_run, len(hypothesis_words))
    matcher = difflib.SequenceMatcher(None, source_words, hypothesis_words, autojunk=False)
    copied = sum(sum(copyable[block.b:block.b + block.size])
                 for block in matcher.get_matching_blocks() if block.size >= run)
    return copied / sum(weights)


def detect_copy(source: str, hypothesis: str, src: str, tgt: str, threshold: float = DetectorConfig.copy_similarity,
                *, coverage: float = DetectorConfig.copy_coverage, min_run: int = DetectorConfig.copy_min_run,
                ) -> Detection:
    """A copy of the source, whole or in part; value = the larger of the similarity (difflib ratio of the
    normalised texts, 1.0 if equal) and :func:`copied_share` (names in the target's script, kept from a source
    in another script, and numbers left out). ``None`` if source and target are the same language code or
    either is empty."""
    a, b = normalize_for_matching(source), normalize_for_matching(hypothesis)
    if src == tgt or not a or not b:
        return Detection(None, None)
    similarity = 1.0 if a == b else difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()
    share = copied_share(a, b, min_run, kept_scripts=(target_scripts(tgt) or set()) - (target_scripts(src) or set()))
    return Detection(similarity >= threshold or share >= coverage, max(similarity, share))


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


def repeated_char_share(text: str, n: int = DetectorConfig.repeat_char_n) -> float:
    """Share of the character ``n``-grams of ``text`` (normalised for matching) that occurred earlier in
    it: about 0.5 for a sentence said twice, more for a loop, near 0 for ordinary prose in any script."""
    text = normalize_for_matching(text)
    grams = [text[i:i + n] for i in range(len(text) - n + 1)]
    if not grams:
        return 0.0
    return 1 - len(set(grams)) / len(grams)


def detect_repetition(hypothesis: str, config: DetectorConfig = DetectorConfig()) -> Detection:
    """Degenerate repetition (word loops, few distinct word 3-grams, or repeated character n-grams in a long
    output); value = :func:`longest_run` of the words."""
    tokens = words(hypothesis)
    run = longest_run(tokens, config.max_repeat_n)
    return Detection(run >= config.repeat_run or _few_distinct_trigrams(tokens, config)
                     or _repeats_characters(hypothesis, config), float(run))


def _few_distinct_trigrams(tokens: list[str], config: DetectorConfig) -> bool:
    if len(tokens) < config.min_words_distinct:
        return False
    trigrams = list(zip(tokens, tokens[1:], tokens[2:], strict=False))
    return len(set(trigrams)) / len(trigrams) < config.min_distinct_trigrams


def _repeats_characters(hypothesis: str, config: DetectorConfig) -> bool:
    if len(hypothesis.strip()) < config.min_chars_repetition:
        return False
    return repeated_char_share(hypothesis, config.repeat_char_n) >= config.repeated_char_share


def detect_off_target(
    hypothesis: str,
    tgt: str,
    identifier: LanguageIdentifier | None,
    threshold: float = DetectorConfig.off_target,
    min_chars: int = DetectorConfig.min_chars_langid,
    *,
    target_score: float = DetectorConfig.off_target_target_score,
    tolerated: Iterable[str] = (),
) -> Detection:
    """Flag when the identifier's top language is neither ``tgt`` nor a ``tolerated`` label (see
    :func:`calibrate`), with a score >= ``threshold``, while ``tgt`` scores below ``target_score``; value =
    the top score, label = that language. ``None`` without identifier, for outputs shorter than
    ``min_chars`` (stripped) and when the identifier has no idea."""
    text = " ".join(hypothesis.split())
    if identifier is None or len(text) < min_chars:
        return Detection(None, None)
    prediction = identifier.predict(text)
    if not prediction:
        return Detection(None, None)
    code, score = prediction[0]
    own = dict(prediction).get(tgt, 0.0)
    flag = code != tgt and code not in set(tolerated) and score >= threshold and own < target_score
    return Detection(flag, float(score), code)


def detect(
    source: str,
    hypothesis: str,
    src: str,
    tgt: str,
    identifier: LanguageIdentifier | None = None,
    config: DetectorConfig = DetectorConfig(),
    *,
    tolerated: Iterable[str] = (),
) -> dict[str, Detection]:
    """Every detector on one translation, keyed by :data:`DETECTORS` names (``tolerated``: identifier labels
    that are not off-target, from :func:`calibrate`)."""
    return {
        EMPTY: detect_empty(hypothesis),
        SCRIPT_LEAK: detect_script_leak(hypothesis, tgt, config.script_leak),
        COPY: detect_copy(source, hypothesis, src, tgt, config.copy_similarity, coverage=config.copy_coverage,
                          min_run=config.copy_min_run),
        REPETITION: detect_repetition(hypothesis, config),
        OFF_TARGET: detect_off_target(hypothesis, tgt, identifier, config.off_target, config.min_chars_langid,
                                      target_score=config.off_target_target_score, tolerated=tolerated),
    }


def flags(
    source: str,
    hypothesis: str,
    src: str,
    tgt: str,
    identifier: LanguageIdentifier | None = None,
    config: DetectorConfig = DetectorConfig(),
    *,
    tolerated: Iterable[str] = (),
) -> dict[str, bool | None]:
    """``{detector: flag}`` for one translation (``None``: not judged). See :func:`detect` for values."""
    found = detect(source, hypothesis, src, tgt, identifier, config, tolerated=tolerated)
    return {name: d.flag for name, d in found.items()}


# --------------------------------------------------------------------------- calibration on the references

@dataclass
class Calibration:
    """The detectors run on a direction's human references: their flags per sentence (with the tolerated
    labels applied), the identifier labels tolerated as the target, and the off-target false-alarm rate
    before tolerating them."""

    src: str
    tgt: str
    identifier: LanguageIdentifier | None = None
    config: DetectorConfig = DetectorConfig()
    reference_flags: list[dict[str, bool | None]] = field(default_factory=list)
    tolerated: tuple[str, ...] = ()
    raw_off_target_rate: float | None = None

    def flags(self, source: str, hypothesis: str) -> dict[str, bool | None]:
        """:func:`flags` of a hypothesis with this calibration's identifier, config and tolerated labels."""
        return flags(source, hypothesis, self.src, self.tgt, self.identifier, self.config, tolerated=self.tolerated)

    def warnings(self) -> list[str]:
        """What the calibration says loudly: tolerated labels, and detectors above the false-alarm limit."""
        notes = []
        if self.tolerated:
            notes.append(f"{OFF_TARGET}: the identifier labels {self.raw_off_target_rate:.0%} of the {self.tgt} "
                         f"references as another language; {', '.join(self.tolerated)} tolerated as {self.tgt} "
                         f"(outputs in {'them' if len(self.tolerated) > 1 else 'it'} are not caught)")
        for name, rate, n in reference_rates(self.reference_flags):
            if rate > self.config.max_false_alarm:
                notes.append(f"{name}: flags {rate:.0%} of {n} human references of {self.src}-{self.tgt} "
                             f"(limit {self.config.max_false_alarm:.0%}); its rate is not trustworthy")
        return notes


def calibrate(
    pairs: Sequence[tuple[str, str]],
    src: str,
    tgt: str,
    identifier: LanguageIdentifier | None = None,
    config: DetectorConfig = DetectorConfig(),
) -> Calibration:
    """Run the detectors on the references of ``pairs`` (source, reference); tolerate the identifier's most
    frequent off-target labels of the references until at most ``config.max_false_alarm`` of the judged
    references stay flagged (see the module docstring). Warnings are logged once here."""
    found = [detect(source, reference, src, tgt, identifier, config) for source, reference in pairs]
    off = [d[OFF_TARGET] for d in found if d[OFF_TARGET].flag is not None]
    labels = Counter(d.label for d in off if d.flag)
    tolerated: list[str] = []
    flagged = sum(labels.values())
    for label, count in labels.most_common():
        if flagged <= config.max_false_alarm * len(off):
            break
        tolerated.append(label)
        flagged -= count
    reference_flags = []
    for d in found:
        row = {name: detection.flag for name, detection in d.items()}
        if row[OFF_TARGET] and d[OFF_TARGET].label in tolerated:
            row[OFF_TARGET] = False
        reference_flags.append(row)
    raw = sum(labels.values()) / len(off) if off else None
    calibration = Calibration(src, tgt, identifier, config, reference_flags, tuple(tolerated), raw)
    for note in calibration.warnings():
        log.warning("detector calibration: %s", note)
    return calibration


def reference_rates(rows_flags: Iterable[dict[str, bool | None] | None]) -> list[tuple[str, float, int]]:
    """``(detector, share of judged flagged, judged)`` over flag dicts, in :data:`DETECTORS` order."""
    judged: dict[str, list[bool]] = {}
    for row in rows_flags:
        for name, flag in (row or {}).items():
            if flag is not None:
                judged.setdefault(name, []).append(bool(flag))
    order = [*DETECTORS, *sorted(set(judged) - set(DETECTORS))]
    return [(name, sum(judged[name]) / len(judged[name]), len(judged[name])) for name in order if judged.get(name)]


# --------------------------------------------------------------------------- rates

def detector_records(
    rows: Iterable[dict[str, Any]], *, stage: str, variant: str | None, direction: str
) -> list[dict[str, Any]]:
    """Scoreboard records ``<detector>_rate`` (share of judged sentences flagged, ``n`` = judged) from
    translation rows carrying a ``flags`` dict. Rows of another ``direction`` are left out; a detector
    that judged no sentence gives no record."""
    mine = [row.get("flags") for row in rows if row.get("direction", direction) == direction]
    return [
        {"stage": stage, "variant": variant, "kind": "detector", "direction": direction,
         "metric": rate_metric(name), "value": rate, "n": n}
        for name, rate, n in reference_rates(mine)
    ]


def reference_records(
    rows: Iterable[dict[str, Any]], *, stage: str, variant: str | None, direction: str,
    max_false_alarm: float = MAX_FALSE_ALARM,
) -> list[dict[str, Any]]:
    """Scoreboard records ``<detector>_ref_rate``: the false-alarm rate of each detector on the human
    references (rows' ``reference_flags``, see :func:`calibrate`), with a ``warning`` when it is above
    ``max_false_alarm`` or when the off-target detector tolerates labels (rows' ``off_target_tolerated``)."""
    mine = [row for row in rows if row.get("direction", direction) == direction]
    tolerated = next((row["off_target_tolerated"] for row in mine if row.get("off_target_tolerated")), None)
    records = []
    for name, rate, n in reference_rates(row.get("reference_flags") for row in mine):
        record = {"stage": stage, "variant": variant, "kind": "detector", "direction": direction,
                  "metric": reference_rate_metric(name), "value": rate, "n": n}
        notes = []
        if rate > max_false_alarm:
            notes.append(f"flags {rate:.0%} of the human references (limit {max_false_alarm:.0%})")
        if name == OFF_TARGET and tolerated:
            notes.append(f"blind to {', '.join(tolerated)}: the identifier gives it to the references")
        if notes:
            record["warning"] = "; ".join(notes)
        records.append(record)
    return records


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
