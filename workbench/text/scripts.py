"""Which script a character is written in, and which scripts a FLORES language code allows.

Two levels, both ISO 15924 codes:

- :func:`char_script`: the Unicode Script property of a letter (``'क'`` -> ``Deva``, ``'か'`` -> ``Hira``);
- :func:`writing_system`: what a language code names (``jpn_Jpan``): kana count as ``Jpan``; Han is told
  apart as ``Hans``/``Hant`` by whoever has the whole text (see ``crawl.langid.dominant_script``).
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache

import pycountry
import regex

# ISO 15924 codes that are not Unicode Script values but name a (set of) Unicode script(s).
SCRIPT_ALIASES: dict[str, frozenset[str]] = {
    "Hans": frozenset({"Hani"}), "Hant": frozenset({"Hani"}), "Hanb": frozenset({"Hani", "Bopo"}),
    "Jpan": frozenset({"Hani", "Hira", "Kana"}), "Kore": frozenset({"Hang", "Hani"}),
    "Hang": frozenset({"Hang", "Hani"}), "Jamo": frozenset({"Hang"}), "Aran": frozenset({"Arab"}),
    "Latf": frozenset({"Latn"}), "Latg": frozenset({"Latn"}), "Cyrs": frozenset({"Cyrl"}),
    "Geok": frozenset({"Geor"}), "Syre": frozenset({"Syrc"}), "Syrj": frozenset({"Syrc"}),
    "Syrn": frozenset({"Syrc"}),
}
# Scripts written without spaces between words: each character (with its marks) is a word of its own.
UNSPACED_SCRIPTS: tuple[str, ...] = ("Hani", "Hira", "Kana", "Thai", "Laoo", "Khmr", "Mymr", "Tibt")
_WRITING_SYSTEM = {"Hira": "Jpan", "Kana": "Jpan"}
_FIRST = ("Latn", "Cyrl", "Grek", "Arab", "Hani", "Hira", "Kana", "Hang", "Ethi", "Deva", "Hebr", "Thai")


def _script_codes() -> list[str]:
    """ISO 15924 codes the ``regex`` module knows as Script values (minus Common/Inherited/aliases)."""
    codes = []
    for script in pycountry.scripts:
        code = script.alpha_4
        if code[0] in "QZ" or code in SCRIPT_ALIASES:
            continue
        try:
            regex.compile(rf"\p{{sc={code}}}")
        except regex.error:
            continue
        codes.append(code)
    return [*_FIRST, *sorted(set(codes) - set(_FIRST))]


SCRIPT_CODES: tuple[str, ...] = tuple(_script_codes())
_SCRIPT_PATTERN = regex.compile("|".join(rf"(?P<{code}>\p{{sc={code}}})" for code in SCRIPT_CODES))


@lru_cache(maxsize=65536)
def char_script(char: str) -> str | None:
    """ISO 15924 code of the Unicode Script of a letter (``'ሰ'`` -> ``'Ethi'``); ``None`` for
    non-letters (combining marks included: they take the script of the letter they follow) and for
    letters of the Common/Inherited/Unknown scripts."""
    if not unicodedata.category(char).startswith("L"):
        return None
    match = _SCRIPT_PATTERN.match(char)
    return match.lastgroup if match else None


def writing_system(script: str | None) -> str | None:
    """The code a language code would use for text in a Unicode ``script`` (kana -> ``Jpan``, else itself)."""
    return _WRITING_SYSTEM.get(script, script) if script is not None else None


def code_script(code: str) -> str:
    """The script part of a FLORES code (``hin_Deva`` -> ``Deva``)."""
    return code.rsplit("_", 1)[-1]


@lru_cache(maxsize=1024)
def target_scripts(code: str) -> frozenset[str] | None:
    """Unicode scripts allowed for a FLORES code (``zho_Hans`` -> {Hani}, ``jpn_Jpan`` -> {Hani, Hira,
    Kana}); ``None`` if the code's script is not one the ``regex`` module knows."""
    script = code_script(code)
    if script in SCRIPT_ALIASES:
        return SCRIPT_ALIASES[script]
    try:
        regex.compile(rf"\p{{sc={script}}}")
    except regex.error:
        return None
    return frozenset({script})
