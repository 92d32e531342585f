"""Crawl stage library: read web archives and text dumps, extract text, identify languages,
deduplicate, and write per-language JSONL corpora.

Main entry points: :func:`run_crawl` and :func:`train_identifier`. The names below are imported from their
submodules on first use, so that importing one submodule (``workbench.crawl.langid``, say, for the scorer's
detectors) does not need the archive readers' compiled libraries (fastwarc, resiliparse).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ExactDeduplicator": "dedup", "normalize_for_dedup": "dedup",
    "decode_html": "extract", "html_to_text": "extract",
    "CharNgramIdentifier": "langid", "FastTextIdentifier": "langid", "LanguageIdentifier": "langid",
    "TargetAwareIdentifier": "langid", "dominant_script": "langid", "dominant_scripts": "langid",
    "fasttext_label_to_code": "langid", "find_confusables": "langid", "read_seed_dir": "langid",
    "train_identifier": "langid",
    "CrawlJob": "pipeline", "run_crawl": "pipeline", "CrawlSettings": "processor", "split_segments": "segments",
    "CrawlStats": "readers", "RawDocument": "readers", "iter_documents": "readers",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """``from workbench.crawl import run_crawl``: the name from its submodule, imported now."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
