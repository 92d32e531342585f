"""Score records and what is known of their metrics: which row and column a record belongs to, the order of
every table and export, which direction is better, how a value is written, and the notes a table carries.

A score record (see :data:`workbench.store.SCORE_FIELDS`) is a flat dict::

    {"stage": "finetune", "variant": "lora-r8", "kind": "lm", "language": "srd_Latn",
     "metric": "bits_per_byte", "value": 1.234, "n": 500, "prefix_policy": "..."}

MT records carry ``"direction"`` (e.g. ``"eng_Latn-srd_Latn"``) and ``"signature"`` instead of
``"language"``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from ..evaluate.detector_names import DETECTORS, rate_metric, reference_rate_metric

BASE_STAGE = "base"
LOWER_IS_BETTER = frozenset({
    "tokens_per_word", "tokens_per_char", "byte_fallback_rate", "bits_per_byte", "bits_per_char", "token_perplexity",
    "surprisal_bits", *(rate_metric(d) for d in DETECTORS), *(reference_rate_metric(d) for d in DETECTORS),
})
HIGHER_IS_BETTER = frozenset({"chrf++", "bleu", "spbleu"})
EXTRA_FIELDS = ("signature", "prefix_policy", "prompt", "excluded", "flagged", "ngram", "skipped", "warning")
SKIPPED_CELL = "skipped"  # the cell of a metric that could not be computed (its record has value None)
METRIC_DIGITS = {"bits_per_byte": 3, "bits_per_char": 3, "token_perplexity": 2, "surprisal_bits": 2, "chrf++": 2,
                 "bleu": 2, "spbleu": 2,
                 **{rate_metric(d): 3 for d in DETECTORS},
                 **{f"{d}overlap_rate": 3 for d in ("", "source_", "reference_")},
                 "documents": 0, "words": 0, "bytes": 0, "tokens_per_word": 3, "tokens_per_char": 3,
                 "byte_fallback_rate": 3}
METRIC_LABELS = {
    "bits_per_byte": "bits per byte",  # of one language's text across stages; bits_per_char across languages
    "bits_per_char": "bits per character",
    "token_perplexity": "token perplexity",
    "surprisal_bits": "second-half surprisal (bits)",
    "chrf++": "chrF++",
    "bleu": "BLEU",
    "spbleu": "spBLEU",
}

Record = Mapping[str, Any]


def row_label(record: Record) -> str:
    """``stage`` or ``stage/variant``: the row a record belongs to."""
    variant = record.get("variant")
    return f"{record['stage']}/{variant}" if variant else str(record["stage"])


def column_label(record: Record) -> str | None:
    """The language (lm, detector) or the direction (mt) a record scores."""
    return record.get("language") or record.get("direction")


def first_seen(values: Iterable[Any]) -> list[Any]:
    """The distinct values (None and NaN left out) in order of first appearance."""
    return list(dict.fromkeys(v for v in values if v is not None and v == v))


def ordered(records: Iterable[Record]) -> list[Record]:
    """Records grouped by stage in order of first appearance, then by row (variant), otherwise in their
    order: the order of every table and export (``to_frame`` and ``scoreboard.json``)."""
    records = list(records)
    stage_rank = {s: i for i, s in enumerate(first_seen(r["stage"] for r in records))}
    row_rank = {r: i for i, r in enumerate(first_seen(row_label(r) for r in records))}
    order = sorted(range(len(records)),
                   key=lambda i: (stage_rank[records[i]["stage"]], row_rank[row_label(records[i])], i))
    return [records[i] for i in order]



def improvement(metric: str, delta: float) -> int:
    """+1 if ``delta`` is an improvement for ``metric``, -1 if it is worse, 0 if even/unknown."""
    if delta is None or math.isnan(delta) or delta == 0:
        return 0
    if metric in LOWER_IS_BETTER:
        return 1 if delta < 0 else -1
    if metric in HIGHER_IS_BETTER:
        return 1 if delta > 0 else -1
    return 0


def format_cell(value: float, delta: float, metric: str) -> str:
    """``"1.234 (-0.056)"``; just the value when there is no delta; empty when there is no value."""
    if value is None or math.isnan(value):
        return ""
    digits = METRIC_DIGITS.get(metric, 3)
    text = f"{value:.{digits}f}"
    if delta is not None and not math.isnan(delta):
        text += f" ({delta:+.{digits}f})"
    return text


def skipped_cells(records: Iterable[Record]) -> dict[tuple[str, str, str], str]:
    """``{(row, metric, column): reason}`` of the records of metrics that were skipped (value None)."""
    return {(row_label(r), r["metric"], column_label(r)): str(r["skipped"])
            for r in records if r.get("skipped") and r.get("value") is None}


def notes(records: Iterable[Record]) -> list[str]:
    """One line per distinct skipped-metric reason and warning of the records, for a table's caption."""
    lines = [f"{r['metric']} skipped: {r['skipped']}" for r in records if r.get("skipped")]
    lines += [f"WARNING {r['metric']} ({column_label(r)}): {r['warning']}" for r in records if r.get("warning")]
    return list(dict.fromkeys(lines))



def bytes_per_char(records: Iterable[Record]) -> dict[str, float]:
    """UTF-8 bytes per character of each language's evaluation text, read off its LM records (bits per character
    over bits per byte of one model on the same text): 1.0 for English, about 3 for Devanagari or Thai."""
    found: dict[str, dict[str, float]] = {}
    for r in records:
        if r.get("kind") == "lm" and r.get("metric") in ("bits_per_byte", "bits_per_char") and r.get("value"):
            found.setdefault(f"{row_label(r)}|{r['language']}", {})[r["metric"]] = float(r["value"])
    out: dict[str, float] = {}
    for key, metrics in found.items():
        if len(metrics) == 2:
            out.setdefault(key.split("|", 1)[1], metrics["bits_per_char"] / metrics["bits_per_byte"])
    return out


def bytes_per_char_note(records: list[Record]) -> str:
    """A caption line that stops bits per byte from being compared across languages whose scripts take different
    numbers of bytes per character."""
    ratios = bytes_per_char(records)
    if not any(r.get("metric") == "bits_per_byte" for r in records) or len(ratios) < 2:
        return ""
    spread = ", ".join(f"{code} {ratio:.2f}" for code, ratio in ratios.items())
    return ("\nbits_per_byte compares stages of one language, not languages: UTF-8 bytes per character differ "
            f"({spread}); across languages compare bits_per_char or surprisal_bits")

