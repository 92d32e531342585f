"""What a vocabulary entry stands for: the identity used to match tokens across vocabularies.

Tokens are matched on the **bytes** they produce, never on decoded strings: decoding a byte-level
token that is part of a UTF-8 character gives U+FFFD, so decode-based matching collapses every
partial-character token onto one row. A key is ``(kind, value)``:

- ``("special", content)`` for added/special tokens (``<|im_start|>``, ``<s>``), matched by content;
- ``("byte", b"\\xe1")`` for SentencePiece byte-fallback tokens ``<0xE1>``;
- ``("text", b" sardu")`` for ordinary pieces (byte-level alphabet decoded through GPT-2's byte table;
  SentencePiece ``▁`` read as a space).
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any

TokenKey = tuple[str, Any]

_BYTE_TOKEN = re.compile(r"<0x([0-9A-Fa-f]{2})>")


@lru_cache(maxsize=1)
def byte_decoder() -> dict[str, int]:
    """GPT-2's printable character -> byte table (the one every byte-level BPE uses)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = list(printable), 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return {chr(char): byte for byte, char in zip(printable, chars, strict=True)}


def is_byte_level_spec(spec: dict[str, Any]) -> bool:
    """True for byte-level BPE pipelines (GPT-2 family), False for SentencePiece-style ones."""
    return "ByteLevel" in json.dumps(spec.get("pre_tokenizer")) or "ByteLevel" in json.dumps(spec.get("decoder"))


def byte_token(piece: str) -> int | None:
    """The byte a SentencePiece byte-fallback token ``<0xAB>`` stands for, else None."""
    match = _BYTE_TOKEN.fullmatch(piece)
    return int(match.group(1), 16) if match else None


def piece_bytes(piece: str, byte_level: bool) -> bytes:
    """The bytes an ordinary vocabulary piece produces in text."""
    if byte_level:
        table = byte_decoder()
        if all(c in table for c in piece):
            return bytes(table[c] for c in piece)
        return piece.encode("utf-8")
    value = byte_token(piece)
    if value is not None:
        return bytes([value])
    return piece.replace("▁", " ").encode("utf-8")


def token_key(piece: str, *, byte_level: bool, special: bool = False) -> TokenKey:
    """The matching identity of a vocabulary entry (see the module docstring)."""
    if special:
        return ("special", piece)
    if not byte_level and byte_token(piece) is not None:
        return ("byte", piece_bytes(piece, byte_level))
    return ("text", piece_bytes(piece, byte_level))


def vocabulary_keys(spec: dict[str, Any]) -> dict[TokenKey, int]:
    """``{key: id}`` for every entry of a ``tokenizer.json`` spec (model vocabulary and added tokens)."""
    byte_level = is_byte_level_spec(spec)
    specials = {t["content"]: t["id"] for t in spec.get("added_tokens", [])}
    keys: dict[TokenKey, int] = {}
    for piece, token_id in spec["model"]["vocab"].items():
        if piece in specials:
            continue
        keys.setdefault(token_key(piece, byte_level=byte_level), token_id)
    for content, token_id in specials.items():
        keys[("special", content)] = token_id
    return keys
