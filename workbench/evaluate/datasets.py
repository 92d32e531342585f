"""Evaluation data: FLORES-layout directories (``<dir>/<code>.<split>``) and line-aligned file pairs.

Every problem (missing file, empty file, misaligned pair) is a :class:`DataError` naming the file(s).
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable
from pathlib import Path

import datasets

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


# -- any evaluation source: FLORES layout, parallel folder, TSV, JSONL, Hugging Face hub ----------------

HUB_PREFIX = "hf:"
LAYOUTS = ("flores", "parallel", "tsv", "jsonl", "hub")
SOURCE_HELP = (
    "a FLORES-layout folder (<code>.<split> files, or <split>/<code>.<split>), a folder of line-aligned "
    "<code>.txt files (NLLB-Seed), a .tsv file whose header names the language codes, a .jsonl file "
    "whose objects have a key per language code, or hf:<dataset id> (e.g. hf:openlanguagedata/flores_plus)"
)


def source_layout(source: str | Path) -> str:
    """Which of :data:`LAYOUTS` an evaluation source is (a :class:`DataError` if none fits)."""
    text = str(source)
    if text.startswith(HUB_PREFIX):
        return "hub"
    path = Path(text)
    if path.is_file():
        suffix = path.name.lower().removesuffix(".gz").rsplit(".", 1)[-1]
        if suffix in ("tsv", "jsonl"):
            return suffix
        raise DataError(f"{path}: cannot read an evaluation set from a '.{suffix}' file; expected {SOURCE_HELP}")
    if path.is_dir():
        split_files = [p for p in [*path.glob("*_*.*"), *path.glob("*/*_*.*")] if p.suffix not in ("", ".txt")]
        return "parallel" if any(path.glob("*_*.txt")) and not split_files else "flores"
    raise DataError(f"{path}: no such file or folder; expected {SOURCE_HELP}")


def has_splits(source: str | Path) -> bool:
    """True for sources with named splits (FLORES layout, hub); single-set sources have none."""
    return source_layout(source) in ("flores", "hub")


def _flores_path(directory: Path, code: str, split: str) -> Path:
    flat, nested = directory / f"{code}.{split}", directory / split / f"{code}.{split}"
    return nested if not flat.is_file() and nested.is_file() else flat


def load_texts(source: str | Path, code: str, split: str = "dev") -> list[str]:
    """The sentences of one language in an evaluation source (see :data:`SOURCE_HELP`), in order.

    ``split`` names the FLORES/hub split; single-set sources (parallel folder, TSV, JSONL) ignore it.
    """
    try:
        check_code(code)
    except ValueError as err:
        raise DataError(str(err)) from None
    layout = source_layout(source)
    if layout == "hub":
        return _hub_texts(str(source), code, split)
    path = Path(source)
    if layout == "flores":
        target = _flores_path(path, code, split)
        return read_lines(target.parent, code, split)
    if layout == "parallel":
        target = path / f"{code}.txt"
        if not target.is_file():
            codes = ", ".join(sorted(p.stem for p in path.glob("*.txt"))) or "none"
            raise DataError(f"{target}: file not found; languages in {path}: {codes}")
        return read_text_lines(target)
    return _table_column(path, code, layout)


def load_pairs(source: str | Path, src: str, tgt: str, split: str = "dev") -> ParallelPairs:
    """Aligned ``(source, target)`` pairs from any evaluation source; misaligned sides are an error."""
    src_lines, tgt_lines = load_texts(source, src, split), load_texts(source, tgt, split)
    where = _describe(source, split)
    if len(src_lines) != len(tgt_lines):
        raise DataError(f"misaligned evaluation set {where}: {src} has {len(src_lines)} sentences but {tgt} has "
                        f"{len(tgt_lines)}; sentence i of one must translate sentence i of the other")
    pairs = [(s, t) for s, t in zip(src_lines, tgt_lines, strict=True) if s.strip() and t.strip()]
    return ParallelPairs(pairs, skipped=len(src_lines) - len(pairs))


def _describe(source: str | Path, split: str) -> str:
    return f"{source} (split '{split}')" if has_splits(source) else str(source)


def _open_text(path: Path):
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def _table_column(path: Path, code: str, layout: str) -> list[str]:
    """One language's column of a TSV (header row of codes) or JSONL (a key per code) file."""
    out: list[str] = []
    try:
        with _open_text(path) as handle:
            if layout == "tsv":
                header = handle.readline().rstrip("\r\n").split("\t")
                if code not in header:
                    named = ", ".join(header) or "nothing"
                    raise DataError(f"{path}: no column '{code}'; the header row names {named} "
                                    "(the first line of a TSV set names the language code of each column)")
                column = header.index(code)
                for number, line in enumerate(handle, start=2):
                    line = line.rstrip("\r\n")
                    if not line:
                        continue
                    fields = line.split("\t")
                    if len(fields) != len(header):
                        raise DataError(f"{path}:{number}: {len(fields)} tab-separated fields, the header has "
                                        f"{len(header)}; fix the row (tabs inside a sentence are not allowed)")
                    out.append(fields[column])
            else:
                for number, line in enumerate(handle, start=1):
                    if not line.strip():
                        continue
                    try:
                        obj = json.loads(line)
                    except json.JSONDecodeError as err:
                        raise DataError(f"{path}:{number}: not a JSON object ({err.msg})") from None
                    row = obj.get("translation", obj) if isinstance(obj, dict) else None
                    if not isinstance(row, dict) or not isinstance(row.get(code), str):
                        keys = ", ".join(row) if isinstance(row, dict) else type(obj).__name__
                        raise DataError(f"{path}:{number}: no string field '{code}' (found: {keys}); each line "
                                        "holds one object with a key per language code")
                    out.append(row[code])
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not valid UTF-8 ({err.reason} at byte {err.start})") from None
    if not any(text.strip() for text in out):
        raise DataError(f"{path}: no '{code}' sentences (the set is empty)")
    return out


def _hub_texts(source: str, code: str, split: str) -> list[str]:
    """``hf:<dataset>[@revision]``: config ``code``, column ``text`` (FLORES+) or ``sentence`` (FLORES-200)."""
    repo, _, revision = source[len(HUB_PREFIX):].partition("@")
    try:
        data = datasets.load_dataset(repo, code, split=split, revision=revision or None)
    except Exception as err:  # network, gating, unknown config: one message with the way out
        raise DataError(
            f"{source}: cannot load config '{code}', split '{split}' from the Hugging Face hub "
            f"({type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else 'no detail'}). Offline or "
            "gated? Log in with `huggingface-cli login` once online, or download FLORES and point eval sets "
            "at a FLORES-layout folder (<code>.dev / <code>.devtest files)"
        ) from None
    column = next((c for c in ("text", "sentence") if c in data.column_names), None)
    if column is None:
        raise DataError(f"{source}: config '{code}' has no 'text' or 'sentence' column "
                        f"(columns: {', '.join(data.column_names)})")
    return [str(x) for x in data[column]]
