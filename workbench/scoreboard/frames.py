"""Score records as pandas tables: one row per record, and values pivoted to rows = (``stage[/variant]``, metric)
by columns = languages/directions, with their change against the base stage."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

from ..store import SCORE_FIELDS
from .records import (
    BASE_STAGE,
    EXTRA_FIELDS,
    SKIPPED_CELL,
    Record,
    column_label,
    first_seen,
    format_cell,
    ordered,
    row_label,
    skipped_cells,
)


def to_frame(records: Iterable[Record]) -> pd.DataFrame:
    """One row per record with ``SCORE_FIELDS`` + extra fields present + ``column`` and ``row``.

    Rows are grouped by stage in order of first appearance (then by row, i.e. variant, in order of
    first appearance within the stage); the record order is otherwise preserved (:func:`ordered`).
    """
    records = ordered(records)
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
    return frame


def _filtered(records: Iterable[Record], kind: str | None) -> pd.DataFrame:
    frame = to_frame(records)
    if kind is not None:
        frame = frame[frame["kind"] == kind]
    return frame[frame["column"].notna()]


def _pivot_frame(frame: pd.DataFrame) -> pd.DataFrame:
    rows = first_seen(frame["row"])
    metrics = first_seen(frame["metric"])
    columns = first_seen(frame["column"])
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


def cell_text(values: pd.DataFrame, deltas: pd.DataFrame, skipped: Mapping[tuple[str, str, str], str],
              key: tuple[str, str], column: Any) -> str:
    """The display text of one cell of :func:`pivot`: ``value (delta)``, or ``skipped`` for a skipped metric."""
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
        cells = {str(c): cell_text(values, deltas, skipped, (row, metric), c) for c in values.columns}
        out.append({"stage": stage, "variant": variant, "metric": metric, **cells})
    return pd.DataFrame(out, columns=["stage", "variant", "metric", *map(str, values.columns)])
