"""Score records as files: CSV (read back with :func:`from_csv`) and the JSON list of ``scoreboard.json``."""

from __future__ import annotations

import io
import json
import math
from collections.abc import Iterable
from typing import Any

import pandas as pd

from ..store import SCORE_FIELDS
from .frames import to_frame
from .records import EXTRA_FIELDS, Record


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

