"""The one definition of letters, words, scripts and text normalisation for the whole package.

Every module that counts letters, splits words, asks which script a character belongs to or normalises text
for matching uses these functions (the crawl's filters, language identification and dedup, the detectors,
contamination, the tokenizer's word lists), so that "a word" or "a letter" means the same everywhere:

- a **letter** is a character of Unicode category L *or* M: the combining marks (Devanagari vowel signs,
  Thai tone marks, Arabic harakat, a Latin combining acute) belong to the letter they follow;
- a **word** is a run of letters, marks, digits (and zero-width joiners); in scripts written without spaces
  between words (Han, kana, Thai, Lao, Khmer, Myanmar, Tibetan) each character, with the combining marks that
  follow it, is a word of its own (their punctuation is no word);
- a character's **script** is its Unicode Script property (``\\p{sc=...}``); a text's **writing system** is the
  ISO 15924 code FLORES uses (kana and Han together are ``Jpan``, Han alone ``Hans`` or ``Hant``).
"""

from .normalize import is_collapsed, lines_collapsed, nfkc, normalize_for_matching
from .scripts import UNSPACED_SCRIPTS, char_script, code_script, target_scripts, writing_system
from .words import (
    LETTER_CLASS,
    NOT_UNSPACED_CHAR,
    UNSPACED_CHAR,
    WORD_CHAR_CLASS,
    WORD_PATTERN,
    is_letter,
    letter_count,
    words,
)

__all__ = [
    "LETTER_CLASS", "NOT_UNSPACED_CHAR", "UNSPACED_CHAR", "UNSPACED_SCRIPTS", "WORD_CHAR_CLASS", "WORD_PATTERN",
    "char_script", "code_script", "is_collapsed", "is_letter", "letter_count", "lines_collapsed", "nfkc",
    "normalize_for_matching", "target_scripts", "words", "writing_system",
]
