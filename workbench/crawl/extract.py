"""HTML to main-content plain text (resiliparse), with charset handling."""

from __future__ import annotations

import codecs
import re

from resiliparse.extract.html2text import extract_plain_text
from resiliparse.parse.encoding import bytes_to_str, detect_encoding, map_encoding_to_html5

from ..errors import DataError

MAX_REPLACEMENT_RATIO = 0.01  # more U+FFFD than this (and > 20 of them): the page is undecodable
_SUPERSETS = {"gb2312": "gb18030", "gbk": "gb18030", "euc-cn": "gb18030"}
_MANY_NEWLINES = re.compile(r"\n{3,}")
_TRAILING_SPACE = re.compile(r"[ \t\u00a0]+\n")


def python_codec(charset: str | None) -> str | None:
    """A Python codec name for an HTTP/HTML charset label (WHATWG aliases applied), or None."""
    if not charset:
        return None
    label = charset.strip().strip("\"'").lower()
    mapped = map_encoding_to_html5(label, fallback_utf8=False) or label
    try:
        name = codecs.lookup(mapped).name
    except LookupError:
        return None
    return _SUPERSETS.get(name, name)


def decode_html(html: bytes, charset: str | None = None) -> str:
    """Decode HTML bytes: the HTTP charset if valid, else meta tag / statistical detection.

    Raises :class:`DataError` if the result is mostly replacement characters.
    """
    detected = python_codec(detect_encoding(html, from_html_meta=True)) or "utf-8"
    primary = python_codec(charset) or detected
    fallbacks = tuple(dict.fromkeys(c for c in (detected, "utf-8") if c != primary))
    text = bytes_to_str(html, primary, errors="replace", fallback_encodings=fallbacks)
    bad = text.count("\ufffd")
    if bad > 20 and bad > MAX_REPLACEMENT_RATIO * len(text):
        raise DataError(f"page does not decode as {primary} ({bad} replacement characters)")
    return text


def html_to_text(html: bytes, charset: str | None = None) -> str:
    """Main-content plain text of an HTML page; paragraphs are separated by blank lines."""
    text = extract_plain_text(
        decode_html(html, charset),
        preserve_formatting=True,
        main_content=True,
        list_bullets=False,
        alt_texts=False,
        links=False,
        form_fields=False,
        noscript=False,
    )
    text = _TRAILING_SPACE.sub("\n", text.replace("\r", "").replace("\ufeff", ""))
    return _MANY_NEWLINES.sub("\n\n", text).strip()
