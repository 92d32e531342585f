"""Score records as terminal tables (rich): the scoreboard, one table per kind of score, and a comparison of
adapters."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..evaluate.detector_names import COPY, OFF_TARGET, REPETITION, SCRIPT_LEAK, rate_metric
from .frames import cell_text, delta_vs_base, pivot
from .records import BASE_STAGE, Record, bytes_per_char_note, improvement, notes, row_label, skipped_cells

KIND_TITLES = {"corpus": "Corpus kept by the crawl",
               "tokenizer": "Tokenization of the evaluation sentences (fertility)",
               "lm": "Language modelling (held-out text)",
               "mt": "Translation", "detector": "Failure detectors",
               "contamination": "Contamination: share of evaluation sentences found in training data"}


def render_table(records: Iterable[Record], title: str | None = "Scoreboard") -> Table:
    """A rich table: one row group per stage (name shown once), one row per variant × metric,
    languages/directions as columns, each cell ``value (Δ vs base)`` coloured green if better than
    base and red if worse (lower is better for bits/perplexity, higher for chrF++/BLEU)."""
    records = list(records)
    values, deltas = pivot(records), delta_vs_base(records)
    stage_of = {row_label(r): (r["stage"], r.get("variant") or "") for r in records}
    has_base = any(r.get("stage") == BASE_STAGE for r in records)
    caption = "value (Δ vs base); green = better than base, red = worse" if has_base else ""
    if any(r.get("metric") == "token_perplexity" for r in records):
        caption += "\ntoken_perplexity depends on the tokenizer: compare stages by bits_per_byte"
    if any(r.get("stage") == "floor" for r in records):
        caption += "\nfloor: a character n-gram trained on the crawl corpus; a model above it is worse than it"
    caption += bytes_per_char_note(records)
    excluded = max((r.get("excluded") or 0 for r in records), default=0)
    if excluded:
        caption += f"\nscored without the evaluation sentences found in training data (up to {excluded} per column)"
    for line in notes(records):
        caption += "\n" + line
    skipped = skipped_cells(records)
    table = Table(title=title, caption=caption.strip("\n") or None)
    table.add_column("stage", style="bold")
    table.add_column("variant")
    table.add_column("metric", style="dim")
    for column in values.columns:
        table.add_column(str(column), justify="right")
    keys = list(values.index)
    for i, (row, metric) in enumerate(keys):
        stage, variant = stage_of[row]
        previous = stage_of[keys[i - 1][0]] if i else None
        following = stage_of[keys[i + 1][0]] if i + 1 < len(keys) else None
        cells = []
        for column in values.columns:
            delta = deltas.loc[(row, metric), column]
            style = {1: "green", -1: "red", 0: ""}[improvement(metric, delta)]
            cells.append(Text(cell_text(values, deltas, skipped, (row, metric), column), style=style))
        table.add_row(
            stage if previous is None or previous[0] != stage else "",
            variant if previous is None or previous != (stage, variant) else "",
            metric,
            *cells,
            end_section=following is not None and following[0] != stage,
        )
    return table



def print_scoreboard(records: Iterable[Record], console: Console | None = None) -> None:
    """Print one :func:`render_table` per kind of score (LM, MT, detectors) to ``console``.

    Without a terminal (a log file, CI) the console is made wide enough for the tables.
    """
    if console is None:
        console = Console()
    if not console.is_terminal and console.width < 140:
        console.width = 140
    records = list(records)
    if not records:
        console.print("no scores yet")
    for kind, title in KIND_TITLES.items():
        subset = [r for r in records if r.get("kind") == kind]
        if subset:
            console.print(render_table(subset, title=title))


def print_comparison(comparison: Any, console: Console) -> None:
    """Tables of a :class:`workbench.compare.Comparison`: translation metrics with significance and
    detector rates per system and direction, then LM retention per language."""
    if not console.is_terminal and console.width < 160:
        console.width = 160
    sig = {(r["system"], r["direction"]): r for r in comparison.paired}
    table = Table(title=f"{comparison.stage}: variants vs {comparison.baseline} (paired bootstrap, p < 0.05 marked *)")
    for column in ("system", "direction", "chrF++ (95% CI)", "p", "BLEU (95% CI)", "p", "off-target", "script leak",
                   "copy", "repetition", "trainable", "time s", "peak MB"):
        table.add_column(column, justify="left" if column in ("system", "direction") else "right")
    for row in comparison.rows:
        s = sig.get((row["system"], row["direction"]), {})
        cost = comparison.costs.get(row["system"], {})

        def cell(metric: str, s: dict = s, row: dict = row) -> tuple[str, str]:
            value = s.get(metric, row.get(metric))
            if value is None:
                return "", ""
            ci = s.get(f"{metric}_ci")
            p = s.get(f"{metric}_p")
            mark = "*" if p is not None and p < 0.05 else ""
            same = s.get("identical_to_baseline") and row["system"] != comparison.baseline
            return (f"{value:.2f}" + (f" ±{ci:.2f}" if ci is not None else "") + mark,
                    "same outputs" if same else "" if p is None else f"{p:.3f}")

        chrf, bleu = cell("chrf++"), cell("bleu")
        rates = [f"{row[k]:.2f}" if row.get(k) is not None else "" for k in
                 map(rate_metric, (OFF_TARGET, SCRIPT_LEAK, COPY, REPETITION))]
        trainable = cost.get("trainable_parameters")
        table.add_row(row["system"], row["direction"], *chrf, *bleu, *rates,
                      f"{trainable:,}" if trainable else "", _num(cost.get("train_seconds")),
                      _num(cost.get("peak_memory_mb")))
    console.print(table)
    retention = Table(title=f"LM retention: bits per byte, change against {comparison.reference}")
    for column in ("system", "language", "bits/byte", "change"):
        retention.add_column(column, justify="left" if column in ("system", "language") else "right")
    for row in comparison.retention:
        delta = row["delta"]
        retention.add_row(row["system"], row["language"], f"{row['bits_per_byte']:.3f}",
                          "" if delta is None else f"{delta:+.3f}")
    console.print(retention)


def _num(value: Any) -> str:
    return "" if value is None else f"{value:,.1f}"

