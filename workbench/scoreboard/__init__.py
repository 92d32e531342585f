"""Pure functions on score records, shared by the CLI, the Gradio app and the notebook API.

``records``: a record's row and column, the order of every table, which direction of a metric is better, how a
value is written; ``frames``: pandas tables (one row per record, pivots with changes against the base stage);
``tables``: terminal tables (rich); ``export``: CSV and JSON; ``plots``: matplotlib figures. Nothing here touches
the disk: records come from ``RunStore.scoreboard()``.
"""

from .export import from_csv, to_csv, to_json
from .frames import cell_text, delta_vs_base, pivot, pivot_with_deltas, to_frame
from .plots import plot_lm, plot_mt
from .records import (
    BASE_STAGE,
    EXTRA_FIELDS,
    HIGHER_IS_BETTER,
    LOWER_IS_BETTER,
    METRIC_DIGITS,
    METRIC_LABELS,
    SKIPPED_CELL,
    Record,
    bytes_per_char,
    bytes_per_char_note,
    column_label,
    first_seen,
    format_cell,
    improvement,
    notes,
    ordered,
    row_label,
    skipped_cells,
)
from .tables import KIND_TITLES, print_comparison, print_scoreboard, render_table

__all__ = [
    "BASE_STAGE", "EXTRA_FIELDS", "HIGHER_IS_BETTER", "KIND_TITLES", "LOWER_IS_BETTER", "METRIC_DIGITS",
    "METRIC_LABELS", "SKIPPED_CELL", "Record", "bytes_per_char", "bytes_per_char_note", "cell_text", "column_label",
    "delta_vs_base", "first_seen", "format_cell", "from_csv", "improvement", "notes", "ordered", "pivot",
    "pivot_with_deltas", "plot_lm", "plot_mt", "print_comparison", "print_scoreboard", "render_table", "row_label",
    "skipped_cells", "to_csv", "to_frame", "to_json",
]
