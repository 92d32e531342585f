"""Streamed, bounded-memory document readers for crawl inputs.

Formats (chosen by file name): ``.warc[.gz]`` / ``.wet[.gz]`` (fastwarc), ``.txt[.gz]`` (one
document per paragraph, or per line if the file has no blank line), ``.jsonl[.gz]`` (field
``text``, optional ``url`` and ``id``), ``.xml[.bz2]`` Wikipedia dumps (one document per article,
markup stripped: :mod:`workbench.crawl.wikipedia`). Bad input never stops a crawl: it is counted and
logged with its location in :class:`CrawlStats` and skipped.

A gzipped WARC/WET file written one gzip member per record (as Common Crawl's are) can be read by byte
range: the records that *start* inside ``[start, end)``, found by moving from ``start`` to the next gzip
member that holds a WARC record (:func:`record_ranges_possible`, :func:`iter_documents` ``byte_range``).
Every range reads only its own part of the file, so big files split into ranges cost one read in total.
"""

from __future__ import annotations

import gzip
import io
import json
import re
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import BinaryIO

from fastwarc.stream_io import BrotliReader, ChunkedReader, GzipReader, ZstdReader
from fastwarc.warc import ArchiveIterator, WarcRecord, WarcRecordType
from resiliparse.parse.encoding import detect_mime

from ..errors import DataError

WARC_SUFFIXES = (".warc", ".warc.gz", ".wet", ".wet.gz")
TEXT_SUFFIXES = (".txt", ".txt.gz")
JSONL_SUFFIXES = (".jsonl", ".jsonl.gz")
WIKI_SUFFIXES = (".xml.bz2", ".xml")
SUPPORTED_SUFFIXES = WARC_SUFFIXES + TEXT_SUFFIXES + JSONL_SUFFIXES + WIKI_SUFFIXES

MAX_RECORD_BYTES = 16 * 1024 * 1024  # larger WARC payloads are skipped (bounded memory)
MAX_DOCUMENT_CHARS = 1024 * 1024  # longer text paragraphs are cut into pieces of this size
HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
_BLANK = re.compile(rb"^\s*$")


@dataclass
class RawDocument:
    """One document as read: HTML bytes (+ HTTP charset) or text. ``offset`` is the record's
    byte offset for WARC/WET, the (1-based) line number for text and JSONL files."""

    source: str
    offset: int
    url: str | None = None
    html: bytes | None = None
    text: str | None = None
    charset: str | None = None
    id: str | None = None


@dataclass
class CrawlStats:
    """Counters for a crawl: documents read per input and bad input with locations."""

    max_logged: int = 100
    docs_read: Counter = field(default_factory=Counter)
    skipped: Counter = field(default_factory=Counter)
    bad_input: list[dict] = field(default_factory=list)
    bad_input_total: int = 0
    bad_input_by_kind: Counter = field(default_factory=Counter)

    def bad(self, kind: str, source: str | Path, offset: int | None, detail: str = "") -> None:
        """Count one piece of bad input; the first ``max_logged`` are kept with their location."""
        self.bad_input_total += 1
        self.bad_input_by_kind[kind] += 1
        if len(self.bad_input) < self.max_logged:
            entry = {"kind": kind, "source": str(source), "offset": offset, "detail": detail[:300]}
            self.bad_input.append(entry)

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return {
            "total": self.bad_input_total,
            "by_kind": dict(sorted(self.bad_input_by_kind.items())),
            "locations": list(self.bad_input),
            "locations_truncated": self.bad_input_total > len(self.bad_input),
        }


def input_format(path: Path) -> str:
    """``warc``, ``text``, ``jsonl`` or ``wiki`` by file name; :class:`DataError` for anything else."""
    name = Path(path).name.lower()
    for suffixes, kind in ((WARC_SUFFIXES, "warc"), (TEXT_SUFFIXES, "text"), (JSONL_SUFFIXES, "jsonl"),
                           (WIKI_SUFFIXES, "wiki")):
        if name.endswith(suffixes):
            return kind
    expected = ", ".join(SUPPORTED_SUFFIXES)
    raise DataError(f"input '{path}' has an unsupported type; expected one of {expected}")


def iter_documents(path: Path, stats: CrawlStats,
                   byte_range: tuple[int, int] | None = None) -> Iterator[RawDocument]:
    """Stream the documents of one input file; bad input is counted in ``stats`` and skipped.
    ``byte_range``: only the records starting in ``[start, end)`` (gzipped WARC/WET files for which
    :func:`record_ranges_possible` holds)."""
    path = Path(path)
    kind = input_format(path)
    source = str(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        stats.bad("unreadable_file", source, None, str(exc))
        return
    if size == 0:
        stats.bad("empty_file", source, 0, "file is empty")
        return
    if byte_range is not None and kind != "warc":
        raise ValueError(f"{path}: only WARC/WET files are read by byte range")
    reader = {"warc": _iter_warc, "text": _iter_text, "jsonl": _iter_jsonl, "wiki": _iter_wiki}[kind]
    documents = reader(path, stats) if byte_range is None else _iter_warc(path, stats, byte_range)
    bad_before, count = stats.bad_input_total, 0
    for doc in documents:
        count += 1
        stats.docs_read[source] += 1
        yield doc
    if kind != "warc" and count == 0 and stats.bad_input_total == bad_before:
        stats.bad("empty_file", source, 0, "no text in file")


# --------------------------------------------------------------------------- Wikipedia dumps

def _iter_wiki(path: Path, stats: CrawlStats) -> Iterator[RawDocument]:
    import xml.etree.ElementTree as ET

    from .wikipedia import iter_articles, wiki_to_text

    source, number = str(path), 0
    try:
        for number, title, markup, url in iter_articles(path):
            try:
                text = wiki_to_text(markup)
            except Exception as exc:  # a page the markup parser cannot handle: skip it, keep going
                stats.bad("bad_markup", source, number, f"{title}: {type(exc).__name__}: {exc}")
                continue
            if text:
                yield RawDocument(source=source, offset=number, url=url, text=text, id=title)
    except (OSError, EOFError, ET.ParseError) as exc:
        stats.bad("truncated_file", source, number, f"dump ends or breaks after page {number}: {exc}")


# --------------------------------------------------------------------------- WARC / WET

def _iter_warc(path: Path, stats: CrawlStats, byte_range: tuple[int, int] | None = None) -> Iterator[RawDocument]:
    source, last_pos, seen = str(path), None, 0
    start, end = byte_range or (0, None)
    with open(path, "rb") as handle:
        if start > 0:
            begin = next_record_member(handle, start, end)
            if begin is None:  # no record starts in this range
                return
            handle.seek(begin)
        try:
            for record in ArchiveIterator(handle, parse_http=False):
                if end is not None and record.stream_pos >= end:
                    return  # the next range's first record: its reader takes it from here
                last_pos, seen = record.stream_pos, seen + 1
                doc = _record_document(record, source, stats)
                if doc is _TRUNCATED:
                    return
                if doc is not None:
                    yield doc
        except (OSError, ValueError) as exc:
            kind = "corrupt_record" if seen else "corrupt_file"
            stats.bad(kind, source, last_pos if seen else start, f"unreadable WARC data: {exc}")
            return
    if seen == 0 and start == 0:
        stats.bad("corrupt_file", source, 0, "no WARC record found")
    elif seen and not _tail_complete(path, last_pos):
        stats.bad("truncated_file", source, last_pos, "file ends inside a WARC record")


_GZIP_MAGIC = b"\x1f\x8b\x08"


def _holds_warc_record(handle: BinaryIO, position: int) -> bool:
    """Whether a gzip member starting at ``position`` decompresses to the beginning of a WARC record."""
    handle.seek(position)
    try:
        head = zlib.decompressobj(31).decompress(handle.read(16 * 1024), 16)
    except zlib.error:
        return False
    return head.startswith(b"WARC/")


def next_record_member(handle: BinaryIO, start: int, end: int | None = None) -> int | None:
    """The offset of the first gzip member at or after ``start`` (and before ``end``) that holds a WARC record,
    or None. The gzip magic bytes can occur inside compressed data too: each candidate is checked."""
    window, position = 1 << 20, start
    while end is None or position < end:
        handle.seek(position)
        chunk = handle.read(window + len(_GZIP_MAGIC) - 1)
        if len(chunk) < len(_GZIP_MAGIC):
            return None
        found = chunk.find(_GZIP_MAGIC)
        while found >= 0 and found < window:
            candidate = position + found
            if end is not None and candidate >= end:
                return None
            if _holds_warc_record(handle, candidate):
                return candidate
            found = chunk.find(_GZIP_MAGIC, found + 1)
        position += window
    return None


def record_ranges_possible(path: Path) -> bool:
    """Whether ``path`` is a gzipped WARC/WET file with one gzip member per record (the second record starts
    a member of its own), so that it can be read by byte range."""
    path = Path(path)
    if input_format(path) != "warc" or not path.name.lower().endswith(".gz"):
        return False
    try:
        with open(path, "rb") as handle:
            starts = [record.stream_pos for record in islice(ArchiveIterator(handle, parse_http=False), 2)]
            return len(starts) == 2 and _holds_warc_record(handle, starts[1])
    except (OSError, ValueError):
        return False


_TRUNCATED = RawDocument(source="", offset=-1)


def _record_document(record: WarcRecord, source: str, stats: CrawlStats) -> RawDocument | None:
    """The document in a ``response``/``resource`` (HTML) or ``conversion`` (text) record."""
    rtype = record.record_type
    if rtype not in (WarcRecordType.response, WarcRecordType.conversion, WarcRecordType.resource):
        return None
    pos, url = record.stream_pos, record.headers.get("WARC-Target-URI")
    warc_content_type = record.headers.get("Content-Type", "")
    if rtype == WarcRecordType.response and warc_content_type.startswith("application/http"):
        record.parse_http(auto_decode="none")
    http = record.http_headers if record.is_http and record.is_http_parsed else None
    content_type = _content_type(record, http)
    reason = None if rtype == WarcRecordType.conversion else _skip_reason(http, content_type)
    if reason is None and record.content_length > MAX_RECORD_BYTES:
        reason = "too_large"
    if reason is not None:
        stats.skipped[reason] += 1
        return None
    declared = record.content_length
    payload = record.reader.read(declared)
    if len(payload) < declared:
        stats.bad("truncated_file", source, pos, f"record payload has {len(payload)} of {declared} bytes")
        return _TRUNCATED
    if rtype == WarcRecordType.conversion:
        return _conversion_document(payload, source, pos, url, stats)
    return _html_document(record, http, content_type, payload, source, pos, url, stats)


def _content_type(record: WarcRecord, http) -> str | None:
    if http is not None:
        return record.http_content_type
    return (record.headers.get("Content-Type") or "").split(";")[0].strip().lower() or None


def _skip_reason(http, content_type: str | None) -> str | None:
    if http is not None and not 200 <= (http.status_code or 0) < 300:
        return "http_status"
    if content_type is not None and content_type not in HTML_TYPES:
        return "not_html"
    return None


def _conversion_document(payload: bytes, source: str, pos: int, url: str | None,
                         stats: CrawlStats) -> RawDocument | None:
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        stats.bad("undecodable", source, pos, f"WET text is not UTF-8: {exc}")
        return None
    return RawDocument(source=source, offset=pos, url=url, text=text)


def _html_document(record: WarcRecord, http, content_type: str | None, payload: bytes, source: str,
                   pos: int, url: str | None, stats: CrawlStats) -> RawDocument | None:
    try:
        body = _decode_http_body(payload, http)
    except (OSError, ValueError) as exc:
        stats.bad("undecodable", source, pos, f"cannot decode HTTP body: {exc}")
        return None
    if content_type is None and detect_mime(body[:4096]) not in HTML_TYPES:
        stats.skipped["not_html"] += 1
        return None
    charset = record.http_charset if http is not None else None
    return RawDocument(source=source, offset=pos, url=url, html=body, charset=charset)


_CONTENT_DECODERS = {
    "gzip": lambda raw: GzipReader(raw),
    "x-gzip": lambda raw: GzipReader(raw),
    "deflate": lambda raw: GzipReader(raw, zlib=True),
    "br": lambda raw: BrotliReader(raw),
    "zstd": lambda raw: ZstdReader(raw),
}


def _decode_http_body(payload: bytes, http) -> bytes:
    """Undo chunked transfer encoding and gzip/deflate/br/zstd content encoding."""
    if http is None:
        return payload
    transfer = (http.get("Transfer-Encoding") or "").lower()
    if "chunked" in transfer:
        payload = _read_all(ChunkedReader(io.BytesIO(payload)))
    encoding = (http.get("Content-Encoding") or "identity").strip().lower()
    if encoding in ("identity", "none", ""):
        return payload
    decoder = _CONTENT_DECODERS.get(encoding)
    if decoder is None:
        raise ValueError(f"unsupported Content-Encoding '{encoding}'")
    return _read_all(decoder(io.BytesIO(payload)))


def _read_all(reader) -> bytes:
    data = reader.read(MAX_RECORD_BYTES + 1)
    if len(data) > MAX_RECORD_BYTES:
        raise ValueError(f"decoded body larger than {MAX_RECORD_BYTES} bytes")
    return data


def _tail_complete(path: Path, last_pos: int) -> bool:
    """Whether the file ends cleanly after the record starting at ``last_pos``."""
    with open(path, "rb") as handle:
        handle.seek(last_pos)
        compressed = handle.read(2) == b"\x1f\x8b"
        handle.seek(last_pos)
        if compressed:
            return _gzip_members_complete(handle)
        return _plain_record_complete(handle, last_pos, path.stat().st_size)


def _gzip_members_complete(handle: BinaryIO) -> bool:
    """Whether every gzip member from the current position to EOF is complete."""
    decomp, buf = None, b""
    try:
        while True:
            if not buf:
                buf = handle.read(1 << 20)
                if not buf:
                    return decomp is None or decomp.eof
            if decomp is None or decomp.eof:
                decomp = zlib.decompressobj(31)
            decomp.decompress(buf, 1 << 20)
            buf = decomp.unused_data if decomp.eof else decomp.unconsumed_tail
    except zlib.error:
        return False


def _plain_record_complete(handle: BinaryIO, last_pos: int, size: int) -> bool:
    """Whether the uncompressed WARC record at ``last_pos`` is complete and the file ends after it."""
    head = handle.read(64 * 1024)
    end = head.find(b"\r\n\r\n")
    match = re.search(rb"(?im)^content-length:\s*(\d+)", head[: max(end, 0)])
    if end < 0 or match is None:
        return False
    block_end = last_pos + end + 4 + int(match.group(1))
    if size < block_end:
        return False
    handle.seek(block_end)
    return _BLANK.match(handle.read(16)) is not None


# --------------------------------------------------------------------------- text / JSONL

def _open_lines(path: Path) -> BinaryIO:
    return gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb")


def _iter_lines(path: Path, stats: CrawlStats) -> Iterator[tuple[int, str]]:
    """``(line_number, line)`` with bad lines and truncation/corruption counted in ``stats``."""
    source, number = str(path), 0
    try:
        with _open_lines(path) as handle:
            for number, raw in enumerate(handle, start=1):
                try:
                    yield number, raw.decode("utf-8").rstrip("\r\n")
                except UnicodeDecodeError as exc:
                    stats.bad("undecodable", source, number, f"line is not UTF-8: {exc}")
    except EOFError as exc:
        stats.bad("truncated_file", source, number, f"compressed file ends early: {exc}")
    except (OSError, zlib.error) as exc:
        kind = "truncated_file" if number else "corrupt_file"
        stats.bad(kind, source, number, f"cannot read: {exc}")


def _has_blank_separator(path: Path) -> bool:
    """Whether a blank line separates two non-blank lines anywhere in the file (a first pass;
    problems are counted by the second)."""
    seen_text = pending_blank = False
    for _, line in _iter_lines(path, CrawlStats()):
        if not line.strip():
            pending_blank = seen_text
        elif pending_blank:
            return True
        else:
            seen_text = True
    return False


def _iter_text(path: Path, stats: CrawlStats) -> Iterator[RawDocument]:
    source = str(path)
    if not _has_blank_separator(path):
        for number, line in _iter_lines(path, stats):
            if line.strip():
                yield RawDocument(source=source, offset=number, text=line)
        return
    lines: list[str] = []
    start, size = 0, 0
    for number, line in _iter_lines(path, stats):
        if line.strip():
            start = start or number
            lines.append(line)
            size += len(line) + 1
        if lines and (not line.strip() or size >= MAX_DOCUMENT_CHARS):
            yield RawDocument(source=source, offset=start, text="\n".join(lines))
            lines, start, size = [], 0, 0
    if lines:
        yield RawDocument(source=source, offset=start, text="\n".join(lines))


def _iter_jsonl(path: Path, stats: CrawlStats) -> Iterator[RawDocument]:
    source = str(path)
    for number, line in _iter_lines(path, stats):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            stats.bad("malformed_json", source, number, str(exc))
            continue
        text = obj.get("text") if isinstance(obj, dict) else None
        if not isinstance(text, str):
            stats.bad("missing_text", source, number, "JSON line has no string field 'text'")
            continue
        if _has_surrogates(text):
            stats.bad("undecodable", source, number, "text has unpaired surrogate escapes")
            continue
        url, doc_id = obj.get("url"), obj.get("id")
        yield RawDocument(
            source=source,
            offset=number,
            url=url if isinstance(url, str) else None,
            text=text,
            id=None if doc_id is None else str(doc_id),
        )


def _has_surrogates(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False
