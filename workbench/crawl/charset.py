"""Choosing the code page of a page that declares none and is not UTF-8, by what its text becomes.

A byte-statistics guess alone often picks a wrong single-byte code page: resiliparse's ``detect_encoding``
reads Windows-1252 Sardinian as Windows-1258, so "famìlia" becomes "faḿlia" and "s'òmine" "s'̣mine". Here
every plausible code page decodes the page's words that hold non-ASCII bytes, and each reading is scored by how
implausible its text is:

- bytes a code page leaves undefined (U+FFFD), C1 control characters, private-use characters;
- combining marks left over after NFC composition on Latin, Cyrillic or Greek letters or on no letter (a mark
  after a consonant or an apostrophe; Arabic, Hebrew and Thai marks stay apart), spacing accents (``¨ ´ ¸ ˇ``)
  and symbols between two letters ("c½ur");
- letters of two scripts in one word, an uppercase letter after a lowercase one ("пРИВЕТ"), uppercase
  letters inside words (a reading in the wrong case makes most words all capitals);
- letters no single language's alphabet explains: the non-ASCII letters of the reading are matched against
  the alphabets of :data:`ALPHABETS`, and those outside the alphabet that explains most of them count
  ("faḿlia", or Czech read as Windows-1252: ø è ù ò next to š ž ý).

The reading with the lowest score wins. On a tie a byte-statistics guess of a code page for a non-Latin script
wins (statistics tell scripts apart well: Hebrew in Windows-1255 also reads as lowercase Russian in
Windows-1251), then the order of :data:`CANDIDATES`, the most used code pages first (statistics tell Latin code
pages apart badly). A page that is UTF-8 but for a few bytes stays UTF-8: UTF-8 is tried too, and its
replacement characters weigh less than the mojibake its other characters become in a single-byte reading.
Only pages without a declared charset that are not valid UTF-8 come here (:func:`~workbench.crawl.extract.
decode_page`), so the cost (a few milliseconds a page) never touches the UTF-8 path.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from functools import lru_cache

# plausible single-byte code pages, the most used first (ties go to the earlier one)
CANDIDATES = (
    "cp1252", "iso8859-15", "iso8859-1", "cp1250", "iso8859-2", "cp1257", "iso8859-13", "cp1254", "cp1258",
    "iso8859-16", "cp1251", "koi8-r", "koi8-u", "iso8859-5", "cp866", "cp1253", "iso8859-7", "cp1255", "cp1256",
    "cp874",
)
# single-byte code pages a statistical guess may name (Python codec names): only these are second-guessed
SINGLE_BYTE = frozenset(CANDIDATES) | {
    "ascii", "iso8859-3", "iso8859-4", "iso8859-9", "iso8859-10", "iso8859-14", "mac-roman", "mac-cyrillic",
    "iso8859-6", "iso8859-8", "iso8859-11", "tis-620",
}
# code pages for Latin-script languages: a statistical guess among them does not win ties
LATIN_CODE_PAGES = frozenset({
    "ascii", "cp1250", "cp1252", "cp1254", "cp1257", "cp1258", "iso8859-1", "iso8859-2", "iso8859-3", "iso8859-4",
    "iso8859-9", "iso8859-10", "iso8859-13", "iso8859-14", "iso8859-15", "iso8859-16", "mac-roman",
})
# the non-ASCII lowercase letters each language writes (its everyday orthography)
ALPHABETS = {
    "ca": "àçèéíïòóúü", "es": "áéíñóúü", "pt": "àáâãçéêíóôõú", "it": "àèéìíòóùúî", "fr": "àâæçéèêëîïôœùûüÿ",
    "oc": "àáçèéíïòóúü", "gl": "áéíñóúü", "ast": "áéíñóúüḥḷ", "srd": "àáçèéìíòóùú", "fur": "àâçèéêìîòôùû",
    "lij": "àâæçèéêìòóôöùûüñ", "vec": "àèéìòóù", "scn": "àâèêìîòôùû", "lmo": "àèéìòóöüù", "co": "àèìòùçé",
    "rm": "àéèêîòöü", "wa": "âåçèéêëîôû", "de": "äöüß", "lb": "äéë", "nl": "áéèëïóöüí", "af": "áéèêëîïôûóú",
    "da": "æøåéó", "sv": "åäöé", "is": "áéíóúýþðæö", "fo": "áíóúýæøð", "fi": "äöåšž", "et": "äöõüšž",
    "lv": "āčēģīķļņšūž", "lt": "ąčęėįšųūž", "pl": "ąćęłńóśźż", "cs": "áčďéěíňóřšťúůýž", "sk": "áäčďéíĺľňóôŕšťúýž",
    "sl": "čšžćđ", "hr": "čćđšž", "hu": "áéíóöőúüű", "ro": "ăâîșțşţ", "sq": "çë", "tr": "çğıöşüâî",
    "az": "çəğıöşü", "mt": "ċġħżàèìòù", "ga": "áéíóú", "gd": "àèìòù", "cy": "âêîôûŵŷäëïöüáéíóúàèìòù",
    "br": "âêîôûùñü", "eu": "ñ", "ku": "çêîşû", "vi": "àáảãạăằắẳẵặâầấẩẫậđèéẻẽẹêềếểễệìíỉĩịòóỏõọôồốổỗộơờớởỡợ"
                                                    "ùúủũụưừứửữựỳýỷỹỵ",
    "ru": "абвгдеёжзийклмнопрстуфхцчшщъыьэюя", "uk": "абвгґдеєжзиіїйклмнопрстуфхцчшщьюя",
    "be": "абвгдеёжзійклмнопрстуўфхцчшыьэюя", "bg": "абвгдежзийклмнопрстуфхцчшщъьюя",
    "sr": "абвгдђежзијклљмнњопрстћуфхцчџш", "mk": "абвгдѓежзѕијклљмнњопрстќуфхцчџш",
    "el": "αβγδεζηθικλμνξοπρσςτυφχψωάέήίόύώϊϋΐΰ", "he": "אבגדהוזחטיכךלמםנןסעפףצץקרשת",
    "ar": "ءآأؤإئابةتثجحخدذرزسشصضطظعغفقكلمنهوىيپچژگکی", "th": "".join(chr(c) for c in range(0x0E01, 0x0E4F)),
}
_LETTER_SETS = tuple(frozenset(letters) for letters in ALPHABETS.values())
_WORD = re.compile(rb"[A-Za-z\x80-\xff]*[\x80-\xff][A-Za-z\x80-\xff]*")  # a word with non-ASCII bytes
IN_WORD_PUNCTUATION = frozenset("’'ʼ·-‐‑")  # may stand between two letters (l’omo, col·lecció)
MAX_WORDS = 400  # the most frequent distinct words scored (enough evidence, bounded time)

# penalties (in "implausible characters")
UNDEFINED = 10.0  # U+FFFD, C1 control, private use, unassigned
LONE_MARK = 4.0  # a combining mark NFC cannot compose with the letter before it
SPACING_ACCENT = 3.0  # ¨ ´ ¸ ˇ ˘ ˛ ˝ ˙ (and modifier letters): a letter of another code page
SYMBOL_IN_WORD = 3.0  # a symbol or punctuation mark between two letters
MIXED_SCRIPTS = 4.0  # per non-ASCII character of a word whose letters are in two scripts
CASE_FLIP = 2.0  # an uppercase letter right after a lowercase one
INNER_CAPITAL = 0.5  # an uppercase letter that does not start its word
UNEXPLAINED_LETTER = 1.5  # a letter outside the alphabet that explains most of the reading
RARE_SYMBOLS = frozenset("¤¦")  # ISO-8859-15's € Š read as Windows-1252
SCRIPTS = frozenset({"LATIN", "CYRILLIC", "GREEK", "HEBREW", "ARABIC", "THAI"})
PRECOMPOSED_SCRIPTS = frozenset({"LATIN", "CYRILLIC", "GREEK"})  # a mark on their letters composes under NFC


@lru_cache(maxsize=4096)
def _char(c: str) -> tuple[str, str, bool, str]:
    """(category, script, is uppercase, lowercase form) of one character."""
    category = unicodedata.category(c)
    script = ""
    if category in ("Lu", "Ll", "Lt", "Lo"):  # (ª º µ: letters of no script in particular)
        script = unicodedata.name(c, "?").split(" ")[0]
        script = script if script in SCRIPTS else "OTHER"
    lower = c.lower()
    return category, script, c.isupper(), lower if len(lower) == 1 else c


def _word_penalty(word: str, letters: Counter) -> float:
    """The implausibility of one decoded word; its non-ASCII letters (lowercase) are added to ``letters``."""
    penalty, scripts, previous, base_script = 0.0, set(), "", ""
    non_ascii = 0
    last = len(word) - 1
    for i, c in enumerate(word):
        category, script, upper, lowercase = _char(c)
        if script:
            if script != "OTHER":
                scripts.add(script)
            if upper and i > 0:
                penalty += CASE_FLIP if previous and previous.islower() else INNER_CAPITAL
        previous = c
        if category != "Mn":  # (marks stack on the letter before them)
            base_script = script
        if c < "\x80":
            continue
        non_ascii += 1
        if script:
            letters[lowercase] += 1
        elif category in ("Cc", "Co", "Cn", "Cs") or c == "\ufffd":
            penalty += UNDEFINED
        elif category == "Mn":  # left over after NFC: implausible where letters are precomposed, or on no letter
            penalty += LONE_MARK if base_script in PRECOMPOSED_SCRIPTS or not base_script else 0.0
        elif category == "Sk" or (category == "Lm" and "\u02b0" <= c <= "\u02ff") or c in RARE_SYMBOLS:
            penalty += SPACING_ACCENT
        elif 0 < i < last and word[i - 1].isalpha() and word[i + 1].isalpha() and c not in IN_WORD_PUNCTUATION:
            penalty += SYMBOL_IN_WORD
    if len(scripts) > 1:
        penalty += MIXED_SCRIPTS * non_ascii
    return penalty


def _alphabet_penalty(letters: Counter) -> float:
    """Letters outside the one alphabet of :data:`ALPHABETS` that covers most of ``letters``."""
    total = sum(letters.values())
    if not total:
        return 0.0
    covered = max(sum(n for letter, n in letters.items() if letter in alphabet) for alphabet in _LETTER_SETS)
    return UNEXPLAINED_LETTER * (total - covered)


def reading_penalty(words: list[str], counts: list[int], known: dict | None = None,
                    bound: float = float("inf")) -> float:
    """How implausible a reading is: the words decoded by one code page, each seen ``counts`` times (the most
    frequent first). ``known``: word penalties already computed (readings share most words); the sum stops once
    it passes ``bound`` (a reading already worse than the best one)."""
    known = {} if known is None else known
    letters: Counter = Counter()
    penalty = 0.0
    for word, count in zip(words, counts, strict=True):
        if word not in known:
            known[word] = _scored_word(word)
        word_penalty, word_letters = known[word]
        penalty += count * word_penalty
        if penalty > bound:
            return penalty
        for letter, n in word_letters.items():
            letters[letter] += n * count
    return penalty + _alphabet_penalty(letters)


def _scored_word(word: str) -> tuple[float, Counter]:
    """The penalty of one decoded word and its non-ASCII letters (lowercase)."""
    if not word.isascii() and any(unicodedata.combining(c) for c in word):
        word = unicodedata.normalize("NFC", word)  # a mark that composes is part of a letter
    letters: Counter = Counter()
    return _word_penalty(word, letters), letters


def guess_single_byte(html: bytes, detected: str | None = None) -> str:
    """The single-byte code page (Python codec name) whose reading of ``html`` is the most plausible, or
    ``utf-8`` for a page that is UTF-8 but for a few bytes (its replacement characters weigh less than the
    mojibake of its other characters); ``detected``: a statistical guess, also tried."""
    frequent = Counter(_WORD.findall(html)).most_common(MAX_WORDS)
    if not frequent:
        return detected if detected in SINGLE_BYTE else CANDIDATES[0]
    joined, counts = b"\n".join(w for w, _ in frequent), [n for _, n in frequent]
    # ties: a statistical guess of a code page for another script first (statistics tell scripts apart well),
    # then the most used code pages (they tell Latin code pages apart badly: Friulian "â â è" as ISO-8859-13)
    trusted = [detected] if detected in SINGLE_BYTE and detected not in LATIN_CODE_PAGES else []
    tried = [*trusted, *CANDIDATES, *([detected] if detected in SINGLE_BYTE else []), "utf-8"]
    best, best_penalty = None, float("inf")
    known: dict = {}
    readings: set[str] = set()
    for codec in dict.fromkeys(tried):
        reading = joined.decode(codec, errors="replace")
        if reading in readings:  # the same text as an earlier code page's (which wins the tie)
            continue
        readings.add(reading)
        penalty = reading_penalty(reading.split("\n"), counts, known, best_penalty)
        if penalty < best_penalty:
            best, best_penalty = codec, penalty
    return best
