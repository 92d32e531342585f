"""The contamination step: after every stage that trains on data, its training files scanned for the evaluation
sentences (see :mod:`workbench.evaluate.contamination`); with ``eval.contamination.exclude`` the scoreboard leaves
the flagged sentences out of every model's scores."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..evaluate.contamination import check_contamination, flagged_sentences
from ..evaluate.scorer import Exclusion, eval_selection, scores_anything
from ..io import atomic_write_json
from ..recipe import EvalConfig, Recipe
from ..store import CONTAMINATION_FILE, SCORES_FILE
from .base import Artifact, ScoringStep, StageContext, Subject


class ContaminationStep(ScoringStep):
    """The subject stage's training data checked for the evaluation sentences the recipe scores."""

    kind = "contamination"
    version = "1"  # covers the report and records of one check: word n-grams of normalised text
    Config = EvalConfig

    @classmethod
    def follow(cls, recipe: Recipe, subject: Subject) -> list[ScoringStep]:
        trains = subject.stage is not None and subject.stage.trains_on_data
        if recipe.eval.contamination is None or not scores_anything(recipe.eval) or not trains:
            return []
        return [cls(recipe.eval, subject)]

    def key_inputs(self, recipe: Recipe, upstream: list[str]) -> dict[str, Any]:
        return {"stage": self.subject.key, "sentences": eval_selection(self.config),
                "config": self.config.contamination.model_dump(mode="json")}

    def run(self, ctx: StageContext) -> dict[str, Any]:
        stage = self.subject.id
        files = self.subject.stage.training_data(ctx.finished_step(stage), ctx.upstream)
        report, records = check_contamination(self.config, files, self.config.contamination, stage=stage,
                                              progress=ctx.progress)
        atomic_write_json(ctx.out_dir / CONTAMINATION_FILE, report)
        atomic_write_json(ctx.out_dir / SCORES_FILE, records)
        flagged = sum(s["flagged"] for s in report["sets"].values())
        ctx.echo(f"[{ctx.step_id}] {flagged} evaluation sentence(s) found in {len(files)} training file(s)")
        return {"models": [], "scores": SCORES_FILE, "report": CONTAMINATION_FILE, "stage": stage, "flagged": flagged}


def flagged_by_checks(eval_cfg: EvalConfig, finished: Sequence[Artifact]) -> Exclusion | None:
    """The evaluation sentences the run's finished contamination checks flagged, when ``eval.contamination.exclude``
    asks to score without them (else None)."""
    cfg = eval_cfg.contamination
    if cfg is None or not cfg.exclude:
        return None
    return flagged_sentences([a.path / CONTAMINATION_FILE for a in finished if a.kind == ContaminationStep.kind])
