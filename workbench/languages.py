"""Language codes: FLORES-style ``xxx_Scrp`` (ISO 639-3 language + ISO 15924 script)."""

from __future__ import annotations

import re
from functools import cache

import pycountry

CODE_PATTERN = re.compile(r"^([a-z]{3})_([A-Z][a-z]{3})$")
CODE_HELP = "a FLORES-style code: ISO 639-3 language + '_' + ISO 15924 script, e.g. 'srd_Latn', 'amh_Ethi'"


@cache
def check_code(code: str) -> str:
    """Return ``code`` if it is a valid FLORES-style code, else raise ``ValueError`` saying why."""
    match = CODE_PATTERN.match(code) if isinstance(code, str) else None
    if not match:
        raise ValueError(f"'{code}' is not {CODE_HELP}")
    language, script = match.groups()
    if pycountry.languages.get(alpha_3=language) is None:
        raise ValueError(f"unknown ISO 639-3 language '{language}' in '{code}'; expected {CODE_HELP}")
    if pycountry.scripts.get(alpha_4=script) is None:
        raise ValueError(f"unknown ISO 15924 script '{script}' in '{code}'; expected {CODE_HELP}")
    return code


@cache
def language_name(code: str) -> str:
    """English name of the language of a FLORES-style code (``srd_Latn`` -> ``Sardinian``)."""
    language = pycountry.languages.get(alpha_3=code.split("_")[0])
    name = language.name if language is not None else code
    return re.sub(r"\s*\(.*\)$", "", name)


def check_direction(direction: str) -> tuple[str, str]:
    """Parse ``src-tgt`` (e.g. ``eng_Latn-srd_Latn``) into two checked codes."""
    parts = direction.split("-") if isinstance(direction, str) else []
    if len(parts) != 2:
        raise ValueError(f"'{direction}' is not a translation direction like 'eng_Latn-srd_Latn'")
    src, tgt = (check_code(p) for p in parts)
    if src == tgt:
        raise ValueError(f"direction '{direction}' translates a language into itself")
    return src, tgt
