"""Whitespace facts and Unicode normalisation shared by the crawl, the detectors and contamination."""

from __future__ import annotations

import unicodedata


def is_collapsed(text: str) -> bool:
    """True if ``" ".join(text.split())`` would return ``text`` unchanged: no whitespace but single spaces
    between words (every other whitespace character is non-printable), none at either end."""
    return text.isprintable() and "  " not in text and text[:1] != " " and text[-1:] != " "


def lines_collapsed(text: str) -> bool:
    """True if every line of ``text`` is empty or :func:`is_collapsed` (its only whitespace: line breaks and single
    spaces between words), checked on the whole text at once."""
    return ("  " not in text and " \n" not in text and "\n " not in text and text[:1] != " " and text[-1:] != " "
            and text.replace("\n", "").isprintable())


def nfkc(text: str) -> str:
    """``unicodedata.normalize("NFKC", text)``, normalising only the lines that need it: a line break neither
    composes with nor decomposes into anything, so lines normalise apart, and a page is usually normal but for a
    few lines (a no-break space, an ellipsis, full-width punctuation), which the whole-text call would redo."""
    if unicodedata.is_normalized("NFKC", text):
        return text
    return "\n".join([line if unicodedata.is_normalized("NFKC", line) else unicodedata.normalize("NFKC", line)
                      for line in text.split("\n")])


def normalize_for_matching(text: str) -> str:
    """NFKC, casefolded, whitespace collapsed to single spaces: the form in which two texts are compared
    (copy detection, contamination). Combining marks are kept (NFKC composes what can be composed)."""
    return " ".join(nfkc(text).casefold().split())
