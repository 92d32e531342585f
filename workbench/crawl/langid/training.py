"""Training the crawl's identifier: seed texts read from ``<code>.txt`` files, a seed model trained on them and
combined with a general model whose confusions are measured on the same texts."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from ...errors import DataError
from .base import LanguageIdentifier
from .charngram import CharNgramIdentifier
from .confusion import measure_confusion
from .fasttext import general_identifier
from .target_aware import TargetAwareIdentifier

logger = logging.getLogger(__name__)


def read_seed_dir(seed_dir: Path, languages: Sequence[str] | None = None) -> dict[str, list[str]]:
    """Read ``<seed_dir>/<code>.txt`` (one text per line) for ``languages`` (None: every file)."""
    seed_dir = Path(seed_dir)
    if not seed_dir.is_dir():
        raise DataError(f"seed directory '{seed_dir}' does not exist")
    if languages is None:
        paths = {p.stem: p for p in sorted(seed_dir.glob("*.txt"))}
    else:
        paths = {code: seed_dir / f"{code}.txt" for code in languages}
    missing = sorted(code for code, path in paths.items() if not path.is_file())
    if missing:
        raise DataError(f"no seed text for {missing} in '{seed_dir}' (expected <code>.txt files)")
    texts = {code: [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
             for code, path in paths.items()}
    empty = sorted(code for code, lines in texts.items() if not lines)
    if empty:
        raise DataError(f"seed files for {empty} in '{seed_dir}' are empty")
    return texts


def combine(texts: dict[str, list[str]], seed_model: LanguageIdentifier, general: LanguageIdentifier | None,
            note: str | None = None) -> TargetAwareIdentifier:
    """The :class:`TargetAwareIdentifier` of a seed model trained on ``texts`` and a general model (None: the seed
    model alone, ``note`` says why), its confusions measured on ``texts``."""
    confusion = measure_confusion(general, texts) if general is not None else None
    for code, labels in (confusion.missing_neighbours() if confusion is not None else {}).items():
        logger.warning("the general identifier calls many %s seed lines %s, which have no seed text: their text "
                       "may be labelled %s; add seed text for them", code, ", ".join(labels), code)
    return TargetAwareIdentifier(seed_model, general, sorted(texts), confusion=confusion, general_note=note)


def train_identifier(
    seed_dir: Path,
    languages: list[str] | None = None,
    *,
    general: LanguageIdentifier | None = None,
    use_fasttext: bool = True,
    general_lid: str | Path | None = None,
) -> TargetAwareIdentifier:
    """Train a :class:`CharNgramIdentifier` on the seed files of ``languages`` (None: every
    file in ``seed_dir``; at least two languages) and combine it with a general model: ``general`` if given,
    else the one ``general_lid`` names (:func:`general_identifier`; default ``fasttext``, or ``none`` when
    ``use_fasttext`` is False). What the general model confuses with the seed languages is measured on the seed
    text (:func:`measure_confusion`).
    """
    texts = read_seed_dir(seed_dir, languages)
    seed_model = CharNgramIdentifier.train(texts)
    note = None
    if general is None:
        general, note = general_identifier(general_lid or ("fasttext" if use_fasttext else "none"))
    return combine(texts, seed_model, general, note)
