"""Fertility of a tokenizer on a language: tokens per word, tokens per character, byte-fallback rate.

A *byte-fallback* token is one that stands for raw bytes rather than a piece of text: a SentencePiece
``<0xAB>`` token, or a byte-level BPE token whose bytes are not whole UTF-8 characters (an Amharic
syllable split into its three bytes). A high rate means the tokenizer does not know the script.
Words are Unicode words (letters, marks, digits; each character of a script written without spaces).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

import regex

from .pieces import byte_decoder, is_byte_level_spec

_WORD = regex.compile(
    r"[\p{sc=Hani}\p{sc=Hira}\p{sc=Kana}\p{sc=Thai}\p{sc=Laoo}\p{sc=Khmr}\p{sc=Mymr}\p{sc=Tibt}]"
    r"|[\p{L}\p{M}\p{N}]+"
)
_BYTE_TOKEN = re.compile(r"<0x([0-9A-Fa-f]{2})>")


def is_byte_level(tokenizer: Any) -> bool:
    """True for byte-level BPE tokenizers (GPT-2 family), False for SentencePiece-style ones."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    return backend is not None and is_byte_level_spec(json.loads(backend.to_str()))


def is_byte_fallback(piece: str, byte_level: bool) -> bool:
    """Whether a token (as ``convert_ids_to_tokens`` gives it) stands for raw bytes (see the module docstring)."""
    if _BYTE_TOKEN.fullmatch(piece):
        return True
    if not byte_level:
        return False
    decoder = byte_decoder()
    if not all(c in decoder for c in piece):
        return False  # an added/special token written as text
    try:
        bytes(decoder[c] for c in piece).decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def fertility(tokenizer: Any, texts: Sequence[str]) -> dict[str, float]:
    """``tokens``, ``words``, ``chars``, ``tokens_per_word``, ``tokens_per_char``, ``byte_fallback_rate``
    of ``texts`` (no special tokens added)."""
    byte_level = is_byte_level(tokenizer)
    ids = tokenizer(list(texts), add_special_tokens=False, split_special_tokens=True, verbose=False)["input_ids"]
    pieces = [p for row in ids for p in tokenizer.convert_ids_to_tokens(row)]
    words = sum(len(_WORD.findall(text)) for text in texts)
    chars = sum(len(text) for text in texts)
    fallback = sum(is_byte_fallback(p, byte_level) for p in pieces)
    tokens = len(pieces)
    return {"tokens": tokens, "words": words, "chars": chars,
            "tokens_per_word": tokens / words if words else float("nan"),
            "tokens_per_char": tokens / chars if chars else float("nan"),
            "byte_fallback_rate": fallback / tokens if tokens else float("nan")}
