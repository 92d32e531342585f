"""The names the engine, the stages and the benchmarks import from ``workbench.modeling``: loading for scoring,
seeds and peak memory live in :mod:`workbench.models`, ``relpath`` in :mod:`workbench.io`."""

from .io import relpath
from .models import (
    LIVE_PEAK_ENV,
    load_for_eval,
    peak_memory_mb,
    peak_memory_record,
    peak_reserved_mb,
    reset_peak_memory,
    resident_memory_mb,
    seed_everything,
)

__all__ = [
    "LIVE_PEAK_ENV", "load_for_eval", "peak_memory_mb", "peak_memory_record", "peak_reserved_mb", "relpath",
    "reset_peak_memory", "resident_memory_mb", "seed_everything",
]
