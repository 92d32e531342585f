"""Whitespace facts about text that the crawl's normalisations share."""

from __future__ import annotations


def is_collapsed(text: str) -> bool:
    """True if ``" ".join(text.split())`` would return ``text`` unchanged: no whitespace but single spaces
    between words (every other whitespace character is non-printable), none at either end."""
    return text.isprintable() and "  " not in text and text[:1] != " " and text[-1:] != " "


def lines_collapsed(text: str) -> bool:
    """True if every line of ``text`` is empty or :func:`is_collapsed` (its only whitespace: line breaks and single
    spaces between words), checked on the whole text at once."""
    return ("  " not in text and " \n" not in text and "\n " not in text and text[:1] != " " and text[-1:] != " "
            and text.replace("\n", "").isprintable())
