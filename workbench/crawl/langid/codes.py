"""FLORES codes of fastText labels: ISO 639 labels (``it``, ``vec``) mapped to FLORES language codes, each with
the script its language is written in, refined by the text's own script where a language has several."""

from __future__ import annotations

import re
from functools import lru_cache

import pycountry

_FLORES_CODE = re.compile(r"[a-z]{3}_[A-Z][a-z]{3}")

# fastText (Wikipedia) labels whose FLORES code is not the plain ISO 639-1 -> 639-3 mapping: where ISO gives a
# macrolanguage (ar, fa, ne, or...) FLORES-200 names one of its individual languages, and that is the code used
# (tests/test_langid_groups.py checks every lid.176 label against the FLORES-200 code list).
_FLORES_LANGUAGE = {
    "ar": "arb", "fa": "pes", "ms": "zsm", "et": "est", "lv": "lvs", "no": "nob", "sw": "swh", "uz": "uzn",
    "az": "azj", "mn": "khk", "ps": "pbt", "sq": "als", "qu": "quy", "ku": "kmr", "ne": "npi", "or": "ory",
    "om": "gaz", "yi": "ydd", "mg": "plt", "gn": "grn", "zh": "zho", "ay": "ayr", "kr": "knc", "ff": "fuv",
    "lah": "pnb", "als": "gsw", "eml": "egl", "bh": "bho", "nah": "nhe", "sh": "hbs", "sc": "srd",
}
_DEFAULT_SCRIPT = {
    **dict.fromkeys(
        [
            "rus", "ukr", "bel", "bul", "mkd", "srp", "kaz", "kir", "tgk", "tat", "bak", "chv",
            "khk", "sah", "oss", "che", "krc", "lez", "mhr", "mrj", "myv", "xal", "bxr", "tyv",
            "udm", "kbd", "ava", "kom", "rue"
        ],
        "Cyrl",
    ),
    **dict.fromkeys(
        [
            "arb", "ara", "pes", "fas", "urd", "pbt", "ckb", "uig", "snd", "azb", "arz", "mzn",
            "glk", "lrc", "pnb", "ary"
        ],
        "Arab",
    ),
    **dict.fromkeys(
        [
            "hin", "mar", "npi", "nep", "san", "mai", "bho", "new", "gom", "dty", "awa", "hne", "mag"
        ],
        "Deva",
    ),
    **dict.fromkeys(["ben", "asm", "bpy"], "Beng"),
    **dict.fromkeys(["amh", "tir"], "Ethi"),
    **dict.fromkeys(["heb", "yid", "ydd"], "Hebr"),
    **dict.fromkeys(["ory", "ori"], "Orya"),
    "zho": "Hans", "wuu": "Hans", "yue": "Hant", "jpn": "Jpan", "kor": "Hang", "ell": "Grek",
    "tha": "Thai", "lao": "Laoo", "khm": "Khmr", "mya": "Mymr", "kat": "Geor", "xmf": "Geor",
    "hye": "Armn", "guj": "Gujr", "pan": "Guru", "tam": "Taml", "tel": "Telu", "kan": "Knda",
    "mal": "Mlym", "sin": "Sinh", "bod": "Tibt", "div": "Thaa",
}
# Scripts that (nearly) identify a language: used when fastText offers no candidate in the script.
SCRIPT_LANGUAGE = {
    "Hans": "zho_Hans", "Hant": "zho_Hant", "Jpan": "jpn_Jpan", "Hang": "kor_Hang", "Grek": "ell_Grek",
    "Thai": "tha_Thai", "Geor": "kat_Geor", "Armn": "hye_Armn", "Khmr": "khm_Khmr", "Laoo": "lao_Laoo",
    "Mymr": "mya_Mymr", "Sinh": "sin_Sinh", "Knda": "kan_Knda", "Mlym": "mal_Mlym", "Taml": "tam_Taml",
    "Telu": "tel_Telu", "Gujr": "guj_Gujr", "Guru": "pan_Guru", "Orya": "ory_Orya", "Tibt": "bod_Tibt",
    "Thaa": "div_Thaa",
}
# Languages commonly written in more than one script: the text's own script decides.
_MULTI_SCRIPT = {
    "srp": {"Cyrl", "Latn"}, "uzn": {"Latn", "Cyrl"}, "azj": {"Latn", "Cyrl"}, "kaz": {"Cyrl", "Latn"},
    "tat": {"Cyrl", "Latn"}, "kmr": {"Latn", "Arab"}, "pan": {"Guru", "Arab"}, "snd": {"Arab", "Deva"},
    "zho": {"Hans", "Hant"}, "yue": {"Hans", "Hant"}, "hbs": {"Latn", "Cyrl"}, "bos": {"Latn", "Cyrl"},
}


@lru_cache(maxsize=1024)
def _iso639_3(label: str) -> str | None:
    if label in _FLORES_LANGUAGE:
        return _FLORES_LANGUAGE[label]
    if len(label) == 2:
        language = pycountry.languages.get(alpha_2=label)
    elif len(label) == 3:
        language = pycountry.languages.get(alpha_3=label)
    else:
        return None
    return language.alpha_3 if language is not None else None


def scripts_of(language: str) -> set[str]:
    """The scripts a language (ISO 639-3) is written in."""
    return _MULTI_SCRIPT.get(language) or {_DEFAULT_SCRIPT.get(language, "Latn")}


def fasttext_label_to_code(label: str, text_script: str | None = None) -> str | None:
    """Map a fastText label (``ru``, ``zh``, ``vec``) to a FLORES code (``rus_Cyrl``...).

    The script is the language's default (Latn unless a small table says otherwise),
    refined by ``text_script`` for languages written in several scripts. ``None`` if unknown.
    """
    language = _iso639_3(label.replace("__label__", ""))
    if language is None:
        return None
    script = _DEFAULT_SCRIPT.get(language, "Latn")
    if text_script is not None and text_script in _MULTI_SCRIPT.get(language, ()):
        script = text_script
    return f"{language}_{script}"


@lru_cache(maxsize=65536)
def _label_code(raw: str, script: str | None) -> str | None:
    if _FLORES_CODE.fullmatch(raw):
        return raw
    return fasttext_label_to_code(raw, script)


def _iso(code: str) -> str:
    """The language part of a FLORES code (``srd_Latn`` -> ``srd``)."""
    return code.split("_")[0]


def code_in_script(script: str | None, label: str) -> str | None:
    """FLORES code of a fastText label for text in ``script``, or None (a label with no FLORES mapping, or a
    language not written in that script)."""
    code = _label_code(str(label).replace("__label__", ""), script)
    if code is not None and script is not None and script not in scripts_of(_iso(code)):
        return None
    return code

