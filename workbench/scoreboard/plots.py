"""Score records as figures: bits per byte (or another LM metric) per language across stages, and translation
quality and failure-detector rates per model. Figures are built on an Agg canvas without pyplot, so they never
touch the global backend or figure list."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .frames import pivot
from .records import LOWER_IS_BETTER, METRIC_LABELS, Record, bytes_per_char_note, first_seen, ordered, row_label


def plot_lm(records: Iterable[Record], metric: str = "bits_per_byte") -> Figure:
    """One line per language across stages (x = ``stage[/variant]`` in order, y = ``metric``).

    Built on an Agg canvas without pyplot, so it never touches the global backend or figure list.
    """
    table = pivot([r for r in records if r.get("kind") == "lm" and r.get("metric") == metric], kind="lm")
    figure = Figure(figsize=(8, 4.5), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    label = METRIC_LABELS.get(metric, metric)
    direction = " (lower is better)" if metric in LOWER_IS_BETTER else ""
    axes.set_title(f"{label} per language across stages")
    axes.set_xlabel("stage")
    axes.set_ylabel(label + direction)
    if table.empty:
        axes.text(0.5, 0.5, f"no {label} scores yet", ha="center", va="center", transform=axes.transAxes)
        return figure
    rows = [row for row, _ in table.index]
    x = list(range(len(rows)))
    for language in table.columns:
        axes.plot(x, table[language].to_numpy(), marker="o", label=str(language))
    axes.set_xticks(x, rows, rotation=20, ha="right")
    axes.grid(True, alpha=0.3)
    axes.legend(title="language")
    note = bytes_per_char_note(list(records)).strip()
    if metric == "bits_per_byte" and note:
        figure.text(0.01, 0.0, note.replace("; across", ";\nacross"), fontsize=7, va="bottom", color="dimgray")
    return figure


def plot_mt(records: Iterable[Record], metric: str = "chrf++") -> Figure:
    """Grouped bars: ``metric`` per direction for every scored model (left), and the failure-detector rates
    of every model averaged over directions (right)."""
    records = ordered(records)
    figure = Figure(figsize=(11, 4.5), layout="constrained")
    FigureCanvasAgg(figure)
    left, right = figure.subplots(1, 2, width_ratios=[3, 2])
    label = METRIC_LABELS.get(metric, metric)
    quality = [r for r in records if r.get("kind") == "mt" and r.get("metric") == metric and r.get("value") is not None]
    rates = [r for r in records if r.get("kind") == "detector" and not str(r.get("metric")).endswith("_ref_rate")]
    _grouped_bars(left, quality, group=lambda r: r["direction"], title=f"{label} per direction (higher is better)")
    _grouped_bars(right, rates, group=lambda r: str(r["metric"]).removesuffix("_rate").replace("_", " "),
                  title="detector rates, mean over directions (lower is better)", mean=True)
    return figure


def _grouped_bars(axes: Any, records: list[Record], *, group: Any, title: str, mean: bool = False) -> None:
    axes.set_title(title, fontsize=10)
    if not records:
        axes.text(0.5, 0.5, "no scores yet", ha="center", va="center", transform=axes.transAxes)
        return
    systems = first_seen(row_label(r) for r in records)
    groups = first_seen(group(r) for r in records)
    values: dict[tuple[str, str], list[float]] = {}
    for r in records:
        values.setdefault((row_label(r), group(r)), []).append(float(r["value"]))
    width = 0.8 / len(systems)
    for i, system in enumerate(systems):
        heights = [sum(v) / len(v) if (v := values.get((system, g))) else 0.0 for g in groups]
        axes.bar([x + i * width for x in range(len(groups))], heights, width=width, label=system)
    axes.set_xticks([x + 0.4 - width / 2 for x in range(len(groups))], groups, rotation=15, ha="right")
    axes.grid(True, axis="y", alpha=0.3)
    axes.legend(fontsize=8)
