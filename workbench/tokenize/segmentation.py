"""How a tokenizer cuts a text: each piece with its bytes, surface text and whether it is a byte fallback.

Used by the app's Tokenizer tab to show base and transplanted segmentations side by side. A piece's
bytes come from the token itself (byte-level alphabet, ``<0xNN>`` tokens, SentencePiece ``▁``), not
from decoding it alone, so a piece holding part of a UTF-8 character is shown as its bytes.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any

from .fertility import _BYTE_TOKEN, _WORD, is_byte_fallback, is_byte_level
from .pieces import byte_decoder

PALETTE = ("#dbeafe", "#dcfce7", "#fef9c3", "#fce7f3", "#e0e7ff", "#ffedd5")
FALLBACK_STYLE = "background:#fecaca;outline:1px dashed #b91c1c"


@dataclass(frozen=True)
class Piece:
    id: int
    token: str  # as convert_ids_to_tokens gives it
    data: bytes
    byte_fallback: bool

    @property
    def text(self) -> str:
        """The piece as text; pieces that are not whole characters as their bytes (``<E1 8A>``)."""
        try:
            return self.data.decode("utf-8")
        except UnicodeDecodeError:
            return "<" + " ".join(f"{b:02X}" for b in self.data) + ">"


def _piece_bytes(token: str, byte_level: bool) -> bytes:
    match = _BYTE_TOKEN.fullmatch(token)
    if match:
        return bytes([int(match.group(1), 16)])
    if byte_level:
        decoder = byte_decoder()
        if all(c in decoder for c in token):
            return bytes(decoder[c] for c in token)
    return token.replace("\u2581", " ").encode("utf-8")


def segment(tokenizer: Any, text: str) -> list[Piece]:
    """The pieces of ``text`` (no special tokens added)."""
    byte_level = is_byte_level(tokenizer)
    ids = tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"]
    tokens = tokenizer.convert_ids_to_tokens(ids)
    return [Piece(i, t, _piece_bytes(t, byte_level), is_byte_fallback(t, byte_level)) for i, t in zip(ids, tokens,
                                                                                                       strict=True)]


def counts(pieces: list[Piece], text: str) -> dict[str, float]:
    """tokens, tokens per word and per character, byte-fallback pieces of one segmentation."""
    words = len(_WORD.findall(text))
    return {"tokens": len(pieces), "tokens_per_word": len(pieces) / words if words else float("nan"),
            "tokens_per_char": len(pieces) / len(text) if text else float("nan"),
            "byte_fallback": sum(p.byte_fallback for p in pieces)}


def to_html(pieces: list[Piece]) -> str:
    """Coloured spans, one per piece (alternating colours; byte fallbacks red and dashed), ids on hover."""
    spans = []
    for n, piece in enumerate(pieces):
        style = FALLBACK_STYLE if piece.byte_fallback else f"background:{PALETTE[n % len(PALETTE)]}"
        label = html.escape(piece.text).replace(" ", "&#9251;" if piece.text.strip() == "" else "&nbsp;")
        kind = "byte-fallback" if piece.byte_fallback else "piece"
        spans.append(f'<span class="wb-{kind}" title="id {piece.id}: {html.escape(piece.token)}" '
                     f'style="{style};padding:1px 2px;margin:1px;border-radius:3px;display:inline-block">'
                     f"{label}</span>")
    return '<div class="wb-segmentation" style="line-height:2;font-family:monospace">' + "".join(spans) + "</div>"


__all__ = ["Piece", "counts", "segment", "to_html"]
