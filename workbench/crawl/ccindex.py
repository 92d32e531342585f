"""Common Crawl index selection (DuckDB over the columnar index) and byte-range fetching.

Common Crawl labels pages with CLD2, which knows no Sardinian (and mislabels many small languages as
their big neighbours), so selection is *recall-oriented*: a record is a candidate if any of

- its ``content_languages`` include a candidate language (for Sardinian: ``ita``, ``spa``, ``cat``),
  or it has none (``unknown``);
- its host's top-level domain is one of ``tlds``;
- its URL matches ``url_pattern`` (e.g. ``sardu|sardinia|logudor``);

and it is an HTML capture with status 200 of the ``warc`` subset. The selection (URL, WARC file,
offset, length) is written as JSONL; :func:`fetch_records` fetches exactly those byte ranges (each
Common Crawl record is its own gzip member, so the concatenation is a valid ``.warc.gz`` that the
crawl stage reads) when the network allows, or from a local mirror.
"""

from __future__ import annotations

import json
import shutil
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ..errors import DataError
from ..io import atomic_write_text
from ..optional import require

DEFAULT_BASE = "https://data.commoncrawl.org/"
COLUMNS = ("url", "warc_filename", "warc_record_offset", "warc_record_length", "content_languages")


def _duckdb():
    return require("duckdb", "Common Crawl index selection")


def select_records(index: str | Sequence[str], *, candidates: Sequence[str] = (), unknown: bool = True,
                   tlds: Sequence[str] = (), url_pattern: str | None = None, limit: int | None = None) -> list[dict]:
    """Rows of the columnar index (parquet files or globs, local or ``s3://``/``https://`` that DuckDB
    reads) selected as the module docstring says, ordered by WARC file and offset."""
    duckdb = _duckdb()
    paths = [index] if isinstance(index, str) else list(index)
    conditions, params = [], []
    languages = [c.split("_")[0] for c in candidates if c != "unknown"]
    if languages:
        conditions.append("list_has_any(string_split(coalesce(content_languages, ''), ','), ?)")
        params.append(languages)
    if unknown or "unknown" in candidates:
        conditions.append("(content_languages IS NULL OR content_languages = '')")
    if tlds:
        conditions.append("url_host_tld IN (SELECT unnest(?))")
        params.append([t.lstrip(".").lower() for t in tlds])
    if url_pattern:
        conditions.append("regexp_matches(url, ?)")
        params.append(url_pattern)
    if not conditions:
        raise DataError("cc-select: give candidate languages, 'unknown', TLDs or a URL pattern to select on")
    query = (f"SELECT {', '.join(COLUMNS)} FROM read_parquet(?, union_by_name=true) "
             "WHERE coalesce(fetch_status, 200) = 200 AND coalesce(subset, 'warc') = 'warc' "
             "AND coalesce(content_mime_detected, 'text/html') IN ('text/html', 'application/xhtml+xml') "
             f"AND ({' OR '.join(conditions)}) ORDER BY warc_filename, warc_record_offset"
             + (f" LIMIT {int(limit)}" if limit else ""))
    try:
        rows = duckdb.execute(query, [paths, *params]).fetchall()
    except duckdb.Error as err:
        raise DataError(f"cc-select: cannot query the index {paths}: {str(err).splitlines()[0]}") from None
    return [dict(zip(COLUMNS, row, strict=True)) for row in rows]


def write_selection(rows: Iterable[dict], path: Path) -> int:
    rows = list(rows)
    atomic_write_text(Path(path), "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return len(rows)


def read_selection(path: Path) -> list[dict]:
    out = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            out.append({k: row[k] for k in ("url", "warc_filename", "warc_record_offset", "warc_record_length")})
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise DataError(f"{path}:{number}: not a selection row ({type(err).__name__}: {err}); "
                            "expected url, warc_filename, warc_record_offset, warc_record_length") from None
    return out


def _read_range(base: str, filename: str, offset: int, length: int, timeout: float) -> bytes:
    if "://" not in base:  # a local mirror of the crawl's files
        with open(Path(base) / filename, "rb") as handle:
            handle.seek(offset)
            data = handle.read(length)
        if len(data) != length:
            raise OSError(f"{Path(base) / filename}: {len(data)} of {length} bytes at offset {offset}")
        return data
    request = urllib.request.Request(base.rstrip("/") + "/" + filename.lstrip("/"),
                                     headers={"Range": f"bytes={offset}-{offset + length - 1}",
                                              "User-Agent": "workbench-cc-fetch"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.read()


def fetch_records(selection: Sequence[dict], out: Path, *, base: str = DEFAULT_BASE, timeout: float = 30.0,
                  progress: bool = False) -> dict[str, Any]:
    """Fetch the selected records into ``out`` (``.warc.gz``); a failed record is counted and skipped,
    an unreachable host stops with one message. Written atomically."""
    out = Path(out)
    tmp = out.with_name(f".{out.name}.tmp")
    fetched, failed, failures = 0, 0, []
    with open(tmp, "wb") as handle:
        for row in tqdm(selection, desc="fetching records", disable=not progress):
            try:
                data = _read_range(base, row["warc_filename"], int(row["warc_record_offset"]),
                                   int(row["warc_record_length"]), timeout)
            except urllib.error.URLError as err:
                if fetched == 0 and isinstance(getattr(err, "reason", None), OSError):
                    tmp.unlink(missing_ok=True)
                    raise DataError(f"cannot reach {base} ({err.reason}); offline? The selection is kept: fetch "
                                    "later with `workbench cc-fetch`, or pass --base a local mirror") from None
                failed += 1
                failures.append({"url": row["url"], "error": str(err)[:200]})
                continue
            except OSError as err:
                failed += 1
                failures.append({"url": row["url"], "error": str(err)[:200]})
                continue
            handle.write(data)
            fetched += 1
    shutil.move(tmp, out)
    return {"fetched": fetched, "failed": failed, "failures": failures[:100], "out": str(out)}
