"""Evaluation data: FLORES-layout directories (``<dir>/<code>.<split>``) and line-aligned file pairs.

Every problem (missing file, empty file, misaligned pair) is a :class:`DataError` naming the file(s).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from ..errors import DataError
from ..languages import check_code


class ParallelPairs(list):
    """A list of ``(source, target)`` pairs; ``skipped`` counts pairs dropped because a side was blank."""

    def __init__(self, pairs: Iterable[tuple[str, str]] = (), skipped: int = 0) -> None:
        super().__init__(pairs)
        self.skipped = skipped


def read_text_lines(path: Path) -> list[str]:
    """Lines of a UTF-8 file, split on ``\\n`` only (never on Unicode separators), ``\\r`` removed.

    A missing file, undecodable file or a file with no non-blank line is a :class:`DataError`.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not valid UTF-8 ({err.reason} at byte {err.start})") from None
    lines = [line.removesuffix("\r") for line in text.split("\n")]
    if lines and lines[-1] == "":
        lines.pop()
    if not any(line.strip() for line in lines):
        raise DataError(f"{path}: the file is empty (no non-blank line)")
    return lines


def available_codes(directory: Path, split: str) -> list[str]:
    """Language codes that have a ``<code>.<split>`` file in ``directory`` (sorted)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return sorted(p.name[: -len(split) - 1] for p in directory.glob(f"*.{split}") if p.is_file())


def read_lines(directory: Path, code: str, split: str) -> list[str]:
    """The lines of ``<directory>/<code>.<split>`` (one sentence per line, FLORES layout)."""
    try:
        check_code(code)
    except ValueError as err:
        raise DataError(str(err)) from None
    directory = Path(directory)
    path = directory / f"{code}.{split}"
    if not path.is_file():
        if not directory.is_dir():
            raise DataError(f"{path}: file not found (the folder {directory} does not exist)")
        codes = available_codes(directory, split)
        present = ", ".join(codes) if codes else f"none (no '*.{split}' file)"
        raise DataError(f"{path}: file not found; languages with a '{split}' split in {directory}: {present}")
    return read_text_lines(path)


def _check_aligned(src_path: Path, src: list[str], tgt_path: Path, tgt: list[str]) -> None:
    if len(src) != len(tgt):
        raise DataError(
            f"misaligned parallel files: {src_path} has {len(src)} lines but {tgt_path} has {len(tgt)}; "
            "line i of one must translate line i of the other"
        )


def read_parallel(directory: Path, src: str, tgt: str, split: str) -> ParallelPairs:
    """Aligned ``(source, target)`` sentence pairs from a FLORES-layout directory."""
    directory = Path(directory)
    src_lines = read_lines(directory, src, split)
    tgt_lines = read_lines(directory, tgt, split)
    _check_aligned(directory / f"{src}.{split}", src_lines, directory / f"{tgt}.{split}", tgt_lines)
    return ParallelPairs(list(zip(src_lines, tgt_lines, strict=True)))


def read_parallel_files(src_path: Path, tgt_path: Path) -> ParallelPairs:
    """Pairs from two line-aligned files (NLLB-Seed style); pairs with a blank side are skipped.

    The number skipped is ``result.skipped``.
    """
    src_lines, tgt_lines = read_text_lines(Path(src_path)), read_text_lines(Path(tgt_path))
    _check_aligned(Path(src_path), src_lines, Path(tgt_path), tgt_lines)
    pairs = [(s, t) for s, t in zip(src_lines, tgt_lines, strict=True) if s.strip() and t.strip()]
    return ParallelPairs(pairs, skipped=len(src_lines) - len(pairs))
