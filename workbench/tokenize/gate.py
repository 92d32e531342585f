"""The transplant gate: bits per byte / per character after a transplant against the model before it.

A new vocabulary must not quietly cost the languages the model already knew: on every checked language
(by default everything scored except the target) the relative increase of bits per byte may not exceed
``max_regression``. Tokenizer-independent metrics only, so the two tokenizers compare fairly.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

GATE_METRICS = ("bits_per_byte", "bits_per_char")


def gate_rows(before: Iterable[dict[str, Any]], after: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (language, metric) scored both before and after: values and their ratio."""
    def table(records: Iterable[dict[str, Any]]) -> dict[tuple[str, str], float]:
        return {(r["language"], r["metric"]): r["value"] for r in records
                if r.get("kind") == "lm" and r.get("metric") in GATE_METRICS and r.get("value") is not None}

    old, new = table(before), table(after)
    return [{"language": lang, "metric": metric, "before": old[(lang, metric)], "after": new[(lang, metric)],
             "ratio": new[(lang, metric)] / old[(lang, metric)] if old[(lang, metric)] else float("nan")}
            for lang, metric in sorted(old.keys() & new.keys())]


def gate_failures(rows: Sequence[dict[str, Any]], *, target: str, max_regression: float,
                  languages: Sequence[str] | None = None) -> list[str]:
    """Messages for checked languages whose bits per byte rose by more than ``max_regression`` (relative)."""
    checked = set(languages) if languages is not None else {r["language"] for r in rows} - {target}
    return [f"{r['language']}: bits per byte {r['before']:.4f} -> {r['after']:.4f} "
            f"({(r['ratio'] - 1) * 100:+.1f}%, allowed +{max_regression * 100:.1f}%)"
            for r in rows if r["metric"] == "bits_per_byte" and r["language"] in checked
            and r["ratio"] > 1 + max_regression]
