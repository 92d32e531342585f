"""Wikipedia XML dumps (``*-pages-articles*.xml[.bz2]``) → plain-text documents, streamed.

Only articles are read (namespace 0, not redirects). Wiki markup is parsed with ``mwparserfromhell``:
references, tables, galleries, templates, and links into other namespaces (files, categories,
interwiki: any link title with a ``:`` prefix) are removed; links keep their visible text; headings
become paragraphs of their own. Each article's URL comes from the dump's ``<siteinfo><base>``.
"""

from __future__ import annotations

import bz2
import contextlib
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import mwparserfromhell

WIKI_SUFFIXES = (".xml.bz2", ".xml")
_DROP_TAGS = frozenset({"ref", "references", "gallery", "math", "score", "timeline", "table", "syntaxhighlight",
                        "source", "templatedata", "imagemap", "chem", "graph", "mapframe", "hiero"})
_LEFTOVER = re.compile(r"^\s*([|!{}]|\[\[|__[A-Z]+__)")
_SPACES = re.compile(r"[ \t]+")
_BLANKS = re.compile(r"\n{3,}")
_QUOTES = re.compile(r"'{2,}")  # bold/italic markup the parser left (unbalanced in the source)


def wiki_to_text(markup: str) -> str:
    """Readable text of one article's wiki markup (see the module docstring)."""
    code = mwparserfromhell.parse(markup)
    for node in list(code.filter_tags(recursive=True)):
        if str(node.tag).lower() in _DROP_TAGS:
            _remove(code, node)
    for node in list(code.filter_wikilinks(recursive=True)):
        if ":" in str(node.title).strip().lstrip(":")[:40] or str(node.title).startswith(":"):
            _remove(code, node)
    for node in list(code.filter_templates(recursive=False)):
        _remove(code, node)
    for node in list(code.filter_headings(recursive=False)):
        code.replace(node, f"\n\n{node.title.strip_code().strip()}\n\n")
    text = _QUOTES.sub("", code.strip_code(normalize=True, collapse=True))
    lines = [_SPACES.sub(" ", line).strip() for line in text.splitlines()]
    lines = [line for line in lines if not _LEFTOVER.match(line)]
    return _BLANKS.sub("\n\n", "\n".join(lines)).strip()


def _remove(code, node) -> None:
    with contextlib.suppress(ValueError):  # already gone with its parent
        code.remove(node)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def iter_articles(path: Path) -> Iterator[tuple[int, str, str, str | None]]:
    """``(page number, title, wiki markup, url)`` of each article of a dump, streamed (bounded memory).

    Raises ``OSError``/``EOFError``/``ET.ParseError`` on a damaged file after yielding what came before.
    """
    path = Path(path)
    opener = bz2.open if path.name.lower().endswith(".bz2") else open
    base: str | None = None
    number = 0
    root = None
    with opener(path, "rb") as handle:
        for event, element in ET.iterparse(handle, events=("start", "end")):
            if event == "start":
                root = element if root is None else root
                continue
            tag = _local(element.tag)
            if tag == "base" and base is None:
                base = (element.text or "").rsplit("/", 1)[0] + "/" if element.text else None
            if tag != "page":
                continue
            number += 1
            fields = {_local(child.tag): child for child in element}
            ns = (fields["ns"].text or "0").strip() if "ns" in fields else "0"
            revision = fields.get("revision")
            text_node = None
            if revision is not None:
                text_node = next((c for c in revision if _local(c.tag) == "text"), None)
            title = (fields["title"].text or "") if "title" in fields else ""
            if ns == "0" and "redirect" not in fields and text_node is not None and text_node.text:
                url = f"{base}{quote(title.replace(' ', '_'))}" if base else None
                yield number, title, text_node.text, url
            root.clear()  # drop finished pages: memory stays bounded on a full dump
