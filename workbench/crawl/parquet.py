"""Parquet copies of the crawl's per-language JSONL corpora (for DuckDB, pandas, ``datasets``, Spark).

The JSONL files stay the crawl's source of truth (the later stages read them); a Parquet file holds the same
records, in the same order, with a fixed schema. It is written in row groups of ``rows_per_group`` records
while the JSONL file is streamed (bounded memory), into a temporary file renamed into place.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import DataError

FIELDS = (("text", "string"), ("language", "string"), ("score", "float64"), ("source", "string"),
          ("offset", "int64"), ("url", "string"))


def schema():
    """The Parquet schema of a crawl record (``url`` may be null: text and JSONL inputs have none)."""
    return pa.schema([pa.field(name, getattr(pa, kind)(), nullable=name == "url") for name, kind in FIELDS])


def _batches(path: Path, size: int) -> Iterator[list[dict]]:
    batch: list[dict] = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}, line {number}: not JSON ({exc}); re-run the crawl to rewrite it") from None
            batch.append({name: record.get(name) for name, _ in FIELDS})
            if len(batch) >= size:
                yield batch
                batch = []
    if batch:
        yield batch


def jsonl_to_parquet(source: Path, target: Path, rows_per_group: int = 10_000) -> int:
    """Write the records of the JSONL file ``source`` to the Parquet file ``target`` (atomically, zstd
    compressed); returns the number of records."""
    target = Path(target)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    rows = 0
    try:
        with pq.ParquetWriter(tmp, schema(), compression="zstd") as writer:
            for batch in _batches(Path(source), rows_per_group):
                try:
                    writer.write_table(pa.Table.from_pylist(batch, schema=schema()))
                except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
                    raise DataError(f"{source}: a record does not fit the corpus schema ({exc})") from None
                rows += len(batch)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return rows
