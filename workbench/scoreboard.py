"""Pure functions on score records, shared by the CLI, the Gradio app and the notebook API.

A score record (see :data:`workbench.store.SCORE_FIELDS`) is a flat dict::

    {"stage": "finetune", "variant": "lora-r8", "kind": "lm", "language": "srd_Latn",
     "metric": "bits_per_byte", "value": 1.234, "n": 500, "prefix_policy": "..."}

MT records carry ``"direction"`` (e.g. ``"eng_Latn-srd_Latn"``) and ``"signature"`` instead of
``"language"``. Nothing here touches the disk: records come from ``RunStore.scoreboard()``.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import pandas as pd

from .store import SCORE_FIELDS

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from rich.console import Console
    from rich.table import Table

BASE_STAGE = "base"
LOWER_IS_BETTER = frozenset({
    "tokens_per_word", "tokens_per_char", "byte_fallback_rate", "bits_per_byte", "bits_per_char", "token_perplexity",
    "surprisal_bits", "empty_rate", "script_leak_rate", "copy_rate", "repetition_rate", "off_target_rate",
    *(f"{d}_ref_rate" for d in ("empty", "script_leak", "copy", "repetition", "off_target")),
})
HIGHER_IS_BETTER = frozenset({"chrf++", "bleu", "spbleu"})
EXTRA_FIELDS = ("signature", "prefix_policy", "prompt", "excluded", "flagged", "ngram", "skipped", "warning")
SKIPPED_CELL = "skipped"  # the cell of a metric that could not be computed (its record has value None)
METRIC_DIGITS = {"bits_per_byte": 3, "bits_per_char": 3, "token_perplexity": 2, "surprisal_bits": 2, "chrf++": 2,
                 "bleu": 2, "spbleu": 2,
                 **{f"{d}_rate": 3 for d in ("empty", "script_leak", "copy", "repetition", "off_target")},
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


# -- frames ----------------------------------------------------------------------------------------
def row_label(record: Record) -> str:
    """``stage`` or ``stage/variant``: the row a record belongs to."""
    variant = record.get("variant")
    return f"{record['stage']}/{variant}" if variant else str(record["stage"])


def column_label(record: Record) -> str | None:
    """The language (lm, detector) or the direction (mt) a record scores."""
    return record.get("language") or record.get("direction")


def _first_seen(values: Iterable[Any]) -> list[Any]:
    return list(dict.fromkeys(v for v in values if v is not None and v == v))


def ordered(records: Iterable[Record]) -> list[Record]:
    """Records grouped by stage in order of first appearance, then by row (variant), otherwise in their
    order: the order of every table and export (``to_frame`` and ``scoreboard.json``)."""
    records = list(records)
    stage_rank = {s: i for i, s in enumerate(_first_seen(r["stage"] for r in records))}
    row_rank = {r: i for i, r in enumerate(_first_seen(row_label(r) for r in records))}
    order = sorted(range(len(records)),
                   key=lambda i: (stage_rank[records[i]["stage"]], row_rank[row_label(records[i])], i))
    return [records[i] for i in order]


def to_frame(records: Iterable[Record]) -> pd.DataFrame:
    """One row per record with ``SCORE_FIELDS`` + extra fields present + ``column`` and ``row``.

    Rows are grouped by stage in order of first appearance (then by row, i.e. variant, in order of
    first appearance within the stage); the record order is otherwise preserved.
    """
    records = list(records)
    extras = [f for f in EXTRA_FIELDS if any(f in r for r in records)]
    rows = []
    for record in records:
        row = {f: record.get(f) for f in SCORE_FIELDS}
        row.update({f: record.get(f) for f in extras})
        row["column"] = column_label(record)
        row["row"] = row_label(record)
        rows.append(row)
    columns = [*SCORE_FIELDS, *extras, "column", "row"]
    frame = pd.DataFrame(rows, columns=columns)
    frame["value"] = pd.to_numeric(frame["value"], errors="coerce").astype(float)
    frame["n"] = pd.array(
        [None if n is None or (isinstance(n, float) and math.isnan(n)) else int(n) for n in frame["n"]],
        dtype="Int64",
    )
    if frame.empty:
        return frame
    stage_rank = {s: i for i, s in enumerate(_first_seen(frame["stage"]))}
    row_rank = {r: i for i, r in enumerate(_first_seen(frame["row"]))}
    order = sorted(
        range(len(frame)), key=lambda i: (stage_rank[frame["stage"].iat[i]], row_rank[frame["row"].iat[i]], i)
    )
    return frame.iloc[order].reset_index(drop=True)


def _filtered(records: Iterable[Record], kind: str | None) -> pd.DataFrame:
    frame = to_frame(records)
    if kind is not None:
        frame = frame[frame["kind"] == kind]
    return frame[frame["column"].notna()]


def _pivot_frame(frame: pd.DataFrame) -> pd.DataFrame:
    rows = _first_seen(frame["row"])
    metrics = _first_seen(frame["metric"])
    columns = _first_seen(frame["column"])
    present = set(zip(frame["row"], frame["metric"], strict=True))
    index = pd.MultiIndex.from_tuples(
        [(r, m) for r in rows for m in metrics if (r, m) in present], names=["row", "metric"]
    )
    if frame.empty:
        return pd.DataFrame(index=index, columns=pd.Index([], name="column"), dtype=float)
    last = frame.drop_duplicates(["row", "metric", "column"], keep="last")
    table = last.set_index(["row", "metric", "column"])["value"].unstack("column")
    table = table.reindex(index=index, columns=pd.Index(columns, name="column"))
    return table.astype(float)


def pivot(records: Iterable[Record], kind: str | None = None) -> pd.DataFrame:
    """Values with rows = (``stage[/variant]``, metric) and columns = languages/directions.

    Rows, metrics and columns keep their order of first appearance; if a cell is scored twice the
    later record wins. ``kind`` (``"lm"``, ``"mt"``, ``"detector"``) keeps only records of that kind.
    """
    return _pivot_frame(_filtered(records, kind))


def delta_vs_base(records: Iterable[Record], kind: str | None = None) -> pd.DataFrame:
    """Same shape as :func:`pivot`: value minus the base stage's value for the same metric/column.

    Base rows themselves (and cells without a base value) are NaN.
    """
    frame = _filtered(records, kind)
    table = _pivot_frame(frame)
    base = frame[frame["stage"] == BASE_STAGE].drop_duplicates(["metric", "column"], keep="last")
    base_value = {(m, c): v for m, c, v in zip(base["metric"], base["column"], base["value"], strict=True)}
    base_rows = set(frame.loc[frame["stage"] == BASE_STAGE, "row"])
    delta = table.copy()
    for row, metric in table.index:
        for column in table.columns:
            reference = base_value.get((metric, column), math.nan)
            delta.loc[(row, metric), column] = (
                math.nan if row in base_rows else table.loc[(row, metric), column] - reference
            )
    return delta.astype(float)


# -- formatting ------------------------------------------------------------------------------------
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


def _cell(values: pd.DataFrame, deltas: pd.DataFrame, skipped: Mapping[tuple[str, str, str], str],
          key: tuple[str, str], column: Any) -> str:
    row, metric = key
    if (row, metric, str(column)) in skipped and math.isnan(values.loc[key, column]):
        return SKIPPED_CELL
    return format_cell(values.loc[key, column], deltas.loc[key, column], metric)


def pivot_with_deltas(records: Iterable[Record], kind: str | None = None) -> pd.DataFrame:
    """A flat table of strings for display: ``stage``, ``variant``, ``metric``, then one column per
    language/direction holding ``"value (Δ vs base)"`` (``skipped`` for a metric that was not computed)."""
    records = list(records)
    values, deltas = pivot(records, kind), delta_vs_base(records, kind)
    stage_of = {row_label(r): (r["stage"], r.get("variant") or "") for r in records}
    skipped = skipped_cells(records)
    out = []
    for row, metric in values.index:
        stage, variant = stage_of[row]
        cells = {str(c): _cell(values, deltas, skipped, (row, metric), c) for c in values.columns}
        out.append({"stage": stage, "variant": variant, "metric": metric, **cells})
    return pd.DataFrame(out, columns=["stage", "variant", "metric", *map(str, values.columns)])


def render_table(records: Iterable[Record], title: str | None = "Scoreboard") -> Table:
    """A rich table: one row group per stage (name shown once), one row per variant × metric,
    languages/directions as columns, each cell ``value (Δ vs base)`` coloured green if better than
    base and red if worse (lower is better for bits/perplexity, higher for chrF++/BLEU)."""
    from rich.table import Table
    from rich.text import Text

    records = list(records)
    values, deltas = pivot(records), delta_vs_base(records)
    stage_of = {row_label(r): (r["stage"], r.get("variant") or "") for r in records}
    has_base = any(r.get("stage") == BASE_STAGE for r in records)
    caption = "value (Δ vs base); green = better than base, red = worse" if has_base else ""
    if any(r.get("metric") == "token_perplexity" for r in records):
        caption += "\ntoken_perplexity depends on the tokenizer: compare stages by bits_per_byte"
    if any(r.get("stage") == "floor" for r in records):
        caption += "\nfloor: a character n-gram trained on the crawl corpus; a model above it is worse than it"
    caption += _bytes_per_char_note(records)
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
            cells.append(Text(_cell(values, deltas, skipped, (row, metric), column), style=style))
        table.add_row(
            stage if previous is None or previous[0] != stage else "",
            variant if previous is None or previous != (stage, variant) else "",
            metric,
            *cells,
            end_section=following is not None and following[0] != stage,
        )
    return table


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


def _bytes_per_char_note(records: list[Record]) -> str:
    """A caption line that stops bits per byte from being compared across languages whose scripts take different
    numbers of bytes per character."""
    ratios = bytes_per_char(records)
    if not any(r.get("metric") == "bits_per_byte" for r in records) or len(ratios) < 2:
        return ""
    spread = ", ".join(f"{code} {ratio:.2f}" for code, ratio in ratios.items())
    return ("\nbits_per_byte compares stages of one language, not languages: UTF-8 bytes per character differ "
            f"({spread}); across languages compare bits_per_char or surprisal_bits")


KIND_TITLES = {"corpus": "Corpus kept by the crawl",
               "tokenizer": "Tokenization of the evaluation sentences (fertility)",
               "lm": "Language modelling (held-out text)",
               "mt": "Translation", "detector": "Failure detectors",
               "contamination": "Contamination: share of evaluation sentences found in training data"}


def print_scoreboard(records: Iterable[Record], console: Console | None = None) -> None:
    """Print one :func:`render_table` per kind of score (LM, MT, detectors) to ``console``.

    Without a terminal (a log file, CI) the console is made wide enough for the tables.
    """
    if console is None:
        from rich.console import Console

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
    from rich.table import Table

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
                 ("off_target_rate", "script_leak_rate", "copy_rate", "repetition_rate")]
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


# -- export ------------------------------------------------------------------------------------------
def to_csv(records: Iterable[Record]) -> str:
    """The records as CSV (columns of :func:`to_frame`); read back with :func:`from_csv`."""
    return to_frame(records).to_csv(index=False)


def from_csv(text: str) -> list[dict[str, Any]]:
    """Records from :func:`to_csv` output (``SCORE_FIELDS`` always present, extras when set)."""
    frame = pd.read_csv(io.StringIO(text), dtype={"n": "Int64"}, keep_default_na=False, na_values=[""])
    records = []
    for row in frame.to_dict("records"):
        record: dict[str, Any] = {}
        for field in (*SCORE_FIELDS, *EXTRA_FIELDS):
            if field not in row:
                continue
            value = row[field]
            missing = value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))
            if missing and field in EXTRA_FIELDS:
                continue
            if missing:
                record[field] = None
            elif field == "n":
                record[field] = int(value)
            elif field == "value":
                record[field] = float(value)
            else:
                record[field] = str(value)
        records.append(record)
    return records


def to_json(records: Iterable[Record]) -> str:
    """The records as a JSON list (the ``scoreboard.json`` format)."""
    return json.dumps([dict(r) for r in records], indent=2, ensure_ascii=False) + "\n"


# -- plots --------------------------------------------------------------------------------------------
def plot_lm(records: Iterable[Record], metric: str = "bits_per_byte") -> Figure:
    """One line per language across stages (x = ``stage[/variant]`` in order, y = ``metric``).

    Built on an Agg canvas without pyplot, so it never touches the global backend or figure list.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

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
    note = _bytes_per_char_note(list(records)).strip()
    if metric == "bits_per_byte" and note:
        figure.text(0.01, 0.0, note.replace("; across", ";\nacross"), fontsize=7, va="bottom", color="dimgray")
    return figure


def plot_mt(records: Iterable[Record], metric: str = "chrf++") -> Figure:
    """Grouped bars: ``metric`` per direction for every scored model (left), and the failure-detector rates
    of every model averaged over directions (right)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

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
    systems = _first_seen(row_label(r) for r in records)
    groups = _first_seen(group(r) for r in records)
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
