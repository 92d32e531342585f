"""The failure detectors' names, defined once: the detectors (:mod:`workbench.evaluate.detectors`), the scorer's
records, a run's translation tables, comparisons and the scoreboard read them here.

A module of names only, so that the views read them without loading the detectors' language identifier.
"""

from __future__ import annotations

EMPTY = "empty"
SCRIPT_LEAK = "script_leak"
COPY = "copy"
REPETITION = "repetition"
OFF_TARGET = "off_target"

DETECTORS = (EMPTY, SCRIPT_LEAK, COPY, REPETITION, OFF_TARGET)
"""Every detector, in the order they run and their records are written."""

TRUNCATED = "truncated"
"""Not a judgement of the text: the translation used its whole token budget. Flagged and rated like a detector."""

SENTENCE_FLAGS = (OFF_TARGET, SCRIPT_LEAK, COPY, REPETITION, EMPTY, TRUNCATED)
"""Each translation's flags in the order tables show them (a run's ``flag_<name>`` columns, a comparison's rates)."""


def rate_metric(name: str) -> str:
    """The scoreboard metric of a flag's rate over the judged translations."""
    return f"{name}_rate"


def reference_rate_metric(name: str) -> str:
    """The scoreboard metric of a detector's false-alarm rate on the human references."""
    return f"{name}_ref_rate"
