"""Packing documents into fixed-length blocks without attention across document boundaries.

Each block carries ``position_ids`` that restart at 0 at every document (segment) start; the loss
passes them with no attention mask, and transformers restricts attention to each segment. The
first token of a segment is never predicted from the segment before it (its label is ``-100``).

Two strategies:

- ``best-fit`` (default): documents stay whole (those longer than a block are cut into block-sized
  pieces) and are placed by best-fit decreasing; the rest of a block is padding, which is its own
  segment and carries no loss ("Fewer Truncations Improve Language Modeling", Ding et al. 2024);
- ``stream``: documents are concatenated and cut every ``block_size`` tokens, the usual
  ``group_texts``; no padding, but documents are split across blocks.
"""

from __future__ import annotations

import bisect
import random
from dataclasses import dataclass

import numpy as np

from .loss import IGNORE
from .mixture import Document


@dataclass
class PackedBlocks:
    """Blocks as arrays of shape (blocks, block_size), with packing statistics."""

    input_ids: np.ndarray
    position_ids: np.ndarray
    labels: np.ndarray
    tokens: int  # document tokens placed
    segments: int  # document pieces placed
    split_documents: int  # documents cut into more than one piece

    @property
    def efficiency(self) -> float:
        """Share of block positions holding document tokens (1.0: no padding)."""
        return self.tokens / self.input_ids.size if self.input_ids.size else 0.0

    def __len__(self) -> int:
        return self.input_ids.shape[0]


def pack(documents: list[Document], block_size: int, *, strategy: str = "best-fit", pad_id: int = 0,
         seed: int = 0) -> PackedBlocks:
    """Pack ``documents`` into blocks of ``block_size`` tokens (block order shuffled with ``seed``)."""
    if strategy == "stream":
        blocks, split = _stream(documents, block_size)
    elif strategy == "best-fit":
        blocks, split = _best_fit(documents, block_size)
    else:
        raise ValueError(f"unknown packing strategy '{strategy}' (best-fit or stream)")
    random.Random(seed).shuffle(blocks)
    return _to_arrays(blocks, block_size, pad_id, split)


def _stream(documents: list[Document], block_size: int) -> tuple[list[list[list[int]]], int]:
    blocks, current, room, split = [], [], block_size, 0
    for doc in documents:
        ids, pieces = doc.ids, 0
        while ids:
            piece, ids = ids[:room], ids[room:]
            current.append(piece)
            pieces += 1
            room -= len(piece)
            if room == 0:
                blocks.append(current)
                current, room = [], block_size
        split += pieces > 1
    return blocks, split  # the last, partial block is dropped


def _best_fit(documents: list[Document], block_size: int) -> tuple[list[list[list[int]]], int]:
    pieces, split = [], 0
    for doc in documents:
        chunks = [doc.ids[i:i + block_size] for i in range(0, len(doc.ids), block_size)]
        split += len(chunks) > 1
        pieces.extend(chunks)
    order = sorted(range(len(pieces)), key=lambda i: (-len(pieces[i]), i))
    blocks: list[list[list[int]]] = []
    by_room: dict[int, list[int]] = {}  # room left -> blocks with that room
    rooms: list[int] = []  # sorted distinct rooms that have blocks
    for index in order:
        piece = pieces[index]
        at = bisect.bisect_left(rooms, len(piece))
        if at < len(rooms):
            room = rooms[at]
            block = by_room[room].pop()
            if not by_room[room]:
                del by_room[room]
                rooms.pop(at)
        else:
            room, block = block_size, len(blocks)
            blocks.append([])
        blocks[block].append(piece)
        left = room - len(piece)
        if left > 0:
            if left not in by_room:
                bisect.insort(rooms, left)
                by_room[left] = []
            by_room[left].append(block)
    return blocks, split


def _to_arrays(blocks: list[list[list[int]]], block_size: int, pad_id: int, split: int) -> PackedBlocks:
    n = len(blocks)
    ids = np.full((n, block_size), pad_id, dtype=np.int64)
    positions = np.zeros((n, block_size), dtype=np.int64)
    labels = np.full((n, block_size), IGNORE, dtype=np.int64)
    tokens = segments = 0
    for row, block in enumerate(blocks):
        at = 0
        for piece in block:
            end = at + len(piece)
            ids[row, at:end] = piece
            positions[row, at:end] = np.arange(len(piece))
            labels[row, at + 1:end] = piece[1:]  # the segment's first token is not predicted across the boundary
            at = end
            segments += 1
            tokens += len(piece)
        positions[row, at:] = np.arange(block_size - at)  # padding: a segment of its own, no loss
    return PackedBlocks(ids, positions, labels, tokens, segments, split)
