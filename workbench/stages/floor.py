"""The floor step: a character n-gram model per language, trained on the corpora of a stage that produces them
(the crawl), scored on the LM sentences like every model (see :mod:`workbench.evaluate.floor`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..evaluate.floor import train_floor_models
from ..evaluate.scorer import eval_fingerprints, floor_sentence_rows, records_from_sentences
from ..io import atomic_write_json, write_jsonl
from ..recipe import EvalConfig, Recipe
from ..store import LM_SENTENCES_FILE, SCORES_FILE, scoring_step_id
from .base import Artifact, ScoringStep, StageContext, Subject
from .score import rescored

FLOOR_STAGE = "floor"
"""The floor's name in the scoreboard's ``stage`` column (its ``variant`` names the n-gram order)."""


class FloorStep(ScoringStep):
    """Character n-gram models trained on the subject's corpora (the first ``eval.lm.floor.max_chars`` characters
    of each language)."""

    kind = "floor"
    version = "1"  # covers the n-gram models and their scores for one corpus and one LM eval config
    Config = EvalConfig

    @classmethod
    def follow(cls, recipe: Recipe, subject: Subject) -> list[ScoringStep]:
        lm = recipe.eval.lm
        if lm is None or lm.floor is None or subject.stage is None or not subject.stage.produces_corpus:
            return []
        return [cls(recipe.eval, subject, f"char-{lm.floor.order}gram")]

    @property
    def step_id(self) -> str:
        """``floor:<subject>`` (one floor per corpus: the order is in the variant, not in the id)."""
        return scoring_step_id(self.kind, self.subject.id)

    def key_inputs(self, recipe: Recipe, upstream: list[str]) -> dict[str, Any]:
        # "crawl": the corpus stage's key, under the name it had when only the crawl made corpora (same keys)
        return {"crawl": self.subject.key, "lm": self.config.lm.model_dump(mode="json"),
                "sets": eval_fingerprints(self.config)}

    def run(self, ctx: StageContext) -> dict[str, Any]:
        lm = self.config.lm
        models, sizes = train_floor_models(ctx.finished_step(self.subject.id), lm.languages, lm.floor,
                                           ctx.out_dir / "models", progress=ctx.progress)
        missing = [code for code in lm.languages if code not in models]
        if missing:
            ctx.log("floor_without_corpus", languages=missing)
        rows = floor_sentence_rows(models, lm)
        write_jsonl(ctx.out_dir / LM_SENTENCES_FILE, rows)
        head = {"stage": FLOOR_STAGE, "variant": self.variant}
        records = records_from_sentences(self.config, head, rows, [], floor=True)
        atomic_write_json(ctx.out_dir / SCORES_FILE, records)
        return {"models": [], "scores": SCORES_FILE, "stage": FLOOR_STAGE, "variant": self.variant,
                "training_chars": sizes, "no_corpus": missing}

    def scoreboard_records(self, artifact: Artifact, finished: Sequence[Artifact]) -> list[dict[str, Any]]:
        return rescored(self.config, artifact, finished, floor=True)
