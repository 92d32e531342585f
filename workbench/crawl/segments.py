"""A document's text as segments (its non-empty lines, each with the separator before it), the paragraph chunks
identified together, each segment's label (a kept language or why it is dropped), and the spans of consecutive
segments of one language that become output documents.

A short segment between two kept segments of the same language stays in the span (headings, list items);
elsewhere it is dropped.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

from ..text import is_collapsed, lines_collapsed

# why a segment is not kept (counted per segment)
TOO_SHORT, OTHER_LANGUAGE = "too_short", "other_language"
LOW_CONFIDENCE, WEAK_EVIDENCE = "low_confidence", "weak_evidence"
_BLANK_LINE = re.compile(r"\n[ \t\u00a0\r\f\v]*\n")


@dataclass
class Span:
    """Consecutive segments of one language, to become one output document."""

    language: str
    parts: list[tuple[str, str]] = field(default_factory=list)  # (separator before, text)
    weighted: float = 0.0
    scored_chars: int = 0

    @property
    def text(self) -> str:
        return "".join(sep + text for sep, text in self.parts).lstrip("\n")

    @property
    def score(self) -> float:
        return self.weighted / self.scored_chars if self.scored_chars else 0.0


def split_segments(text: str) -> list[tuple[str, str]]:
    """Non-empty lines with whitespace collapsed, each with the separator that preceded it:
    ``"\\n\\n"`` at a paragraph break, ``"\\n"`` inside a paragraph."""
    out: list[tuple[str, str]] = []
    if lines_collapsed(text):  # the usual case: blank lines are empty lines, the others are as they should be
        for block in text.split("\n\n"):
            separator = "\n\n"
            for line in block.split("\n"):
                if line:
                    out.append((separator, line))
                    separator = "\n"
        return out
    for block in _BLANK_LINE.split(text):
        separator = "\n\n"
        for line in block.split("\n"):
            if line and not line.isspace():
                if not is_collapsed(line):
                    line = " ".join(line.split())
                out.append((separator, line))
                separator = "\n"
    return out


def paragraph_chunks(segments: list[tuple[str, str]], long: list[int], scripts: dict[int, str | None],
                     max_chars: int) -> list[list[int]]:
    """Runs of two or more indices in ``long`` (segments to identify) of one paragraph, with one script, at
    most ``max_chars`` characters together (joined by spaces). A paragraph starts at a ``"\\n\\n"`` separator."""
    chunks: list[list[int]] = []
    current: list[int] = []
    size, paragraph, paragraph_of = 0, -1, []
    for sep, _ in segments:
        paragraph += sep == "\n\n"
        paragraph_of.append(paragraph)
    for i in long:
        length = len(segments[i][1])
        if current and (paragraph_of[i] != paragraph_of[current[-1]] or scripts[i] != scripts[current[-1]]
                        or size + 1 + length > max_chars):
            chunks.append(current)
            current, size = [], 0
        if length <= max_chars:
            current.append(i)
            size += length + (1 if size else 0)
    if current:
        chunks.append(current)
    return [chunk for chunk in chunks if len(chunk) > 1]


def cut_at_space(text: str, limit: int) -> str:
    """The first ``limit`` characters of ``text``, shortened to the last space in their final quarter (no
    broken word at the end); text without such a space (Chinese, Thai...) is cut at ``limit``."""
    space = text.rfind(" ", limit * 3 // 4, limit + 1)
    return text[:space] if space > 0 else text[:limit]


def label_prediction(text: str, prediction: list[tuple[str, float]] | None, languages: frozenset[str],
                     min_chars: int, min_score: float,
                     min_scores: dict[str, float] | None = None) -> tuple[str, float, str | None]:
    """``(label, score, top_code)`` of a segment from the identifier's prediction (``None``: not identified):
    label is a kept language code or a drop reason. A segment shorter than ``min_chars`` is not identified
    (too little evidence); ``min_scores`` overrides ``min_score`` per language."""
    if len(text) < min_chars:
        return TOO_SHORT, 0.0, None
    if not prediction:
        return LOW_CONFIDENCE, 0.0, None
    code, score = prediction[0]
    if code not in languages:
        return OTHER_LANGUAGE, score, code
    if score < (min_scores or {}).get(code, min_score):
        return LOW_CONFIDENCE, score, code
    return code, score, code


def group_spans(segments: list[tuple[str, str]], labels: list[tuple[str, float]],
                dropped: Counter) -> list[Span]:
    """Join consecutive kept segments of one language (short ones in between stay)."""
    spans: list[Span] = []
    current: Span | None = None
    pending: list[tuple[str, str]] = []
    for (sep, text), (label, score) in zip(segments, labels, strict=True):
        if label == TOO_SHORT:
            if current is not None:
                pending.append((sep, text))
            else:
                dropped[TOO_SHORT] += 1
            continue
        if current is not None and label == current.language:
            current.parts.extend(pending)
        else:
            dropped[TOO_SHORT] += len(pending)
            current = None if label in (OTHER_LANGUAGE, LOW_CONFIDENCE, WEAK_EVIDENCE) else Span(label)
            if current is None:
                dropped[label] += 1
            else:
                spans.append(current)
        pending = []
        if current is not None:
            current.parts.append((sep, text))
            current.weighted += score * len(text)
            current.scored_chars += len(text)
    dropped[TOO_SHORT] += len(pending)
    return spans
