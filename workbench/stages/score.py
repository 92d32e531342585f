"""The score step: every model (the base model's, and each model-producing stage's, per variant) scored on the
recipe's evaluation sets, and the scored stage's quality gate against the model it started from."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..errors import GateError
from ..evaluate.scorer import eval_fingerprints, rescore_directory, scores_anything
from ..io import atomic_write_json, stable_hash
from ..recipe import EvalConfig, Recipe
from ..store import GATE_FILE, SCORE_STEP, SCORES_FILE
from ..tasks import load_and_score
from .base import Artifact, ScoringStep, StageContext, Subject, recorded_scores
from .contamination import flagged_by_checks


def rescored(eval_cfg: EvalConfig, artifact: Artifact, finished: Sequence[Artifact], *,
             floor: bool) -> list[dict[str, Any]]:
    """A scored step's records; with ``eval.contamination.exclude`` recomputed from its per-sentence files
    without every evaluation sentence a contamination check of the run flagged."""
    exclusion = flagged_by_checks(eval_cfg, finished)
    if exclusion is None:
        return recorded_scores(artifact)
    head = {"stage": artifact.record["stage"], "variant": artifact.record["variant"]}
    return rescore_directory(eval_cfg, head, artifact.path, exclusion, floor=floor)


class ScoreStep(ScoringStep):
    """One model of the subject (a variant, or its only model) scored as ``eval:`` asks."""

    kind = SCORE_STEP
    version = "6"  # covers the scores of one model under one eval config: the detectors and their calibration
    # on the references, per-sentence files, surprisal, spBLEU and per-script BLEU tokenizers, chat prompts, bf16
    # where native, generation budgets from characters with truncation counted
    Config = EvalConfig

    @classmethod
    def follow(cls, recipe: Recipe, subject: Subject) -> list[ScoringStep]:
        if not scores_anything(recipe.eval):
            return []
        variants = subject.stage.model_variants() if subject.stage is not None else [None]
        return [cls(recipe.eval, subject, variant) for variant in variants]

    def key_inputs(self, recipe: Recipe, upstream: list[str]) -> dict[str, Any]:
        eval_key = stable_hash({"eval": self.config.model_dump(mode="json", exclude={"contamination"}),
                                "sets": eval_fingerprints(self.config)})
        return {"eval": eval_key, "model": self.subject.key, "variant": self.variant}

    def run(self, ctx: StageContext) -> dict[str, Any]:
        artifact = ctx.finished_step(self.subject.id)
        ref = next(m for m in artifact.models() if m.variant == self.variant)
        records = load_and_score(ref, self.config, ctx.out_dir, device=ctx.device, dtype=ctx.dtype,
                                 stage=self.subject.id, variant=self.variant, progress=ctx.progress)
        atomic_write_json(ctx.out_dir / SCORES_FILE, records)
        result = {"models": [], "scores": SCORES_FILE, "stage": self.subject.id, "variant": self.variant}
        gate = self._gate(ctx, records)
        if gate is not None:
            atomic_write_json(ctx.out_dir / GATE_FILE, gate)
            result["gate"] = {"failures": gate["failures"], "action": gate["action"]}
        return result

    def scoreboard_records(self, artifact: Artifact, finished: Sequence[Artifact]) -> list[dict[str, Any]]:
        return rescored(self.config, artifact, finished, floor=False)

    def _gate(self, ctx: StageContext, records: list[dict[str, Any]]) -> dict[str, Any] | None:
        """The subject stage's gate against the scores of the model it started from; raises when it fails."""
        before = _scores_before(ctx.finished, self.subject.id)
        if self.subject.stage is None or before is None:
            return None
        gate = self.subject.stage.gate(before, records, ctx.recipe.languages)
        if gate is None:
            return None
        for failure in gate["failures"]:
            ctx.log("gate_failed" if gate["action"] == "fail" else "gate_warning", message=failure)
            ctx.echo(f"[{ctx.step_id}] gate: {failure}")
        if gate["failures"] and gate["action"] == "fail":
            stage = self.subject.id
            raise GateError(f"stage '{stage}' failed its gate: " + "; ".join(gate["failures"])
                            + f". Change the stage's config, or set '{stage}: gate: action: warn' "
                              "to accept the regression.")
        return gate


def _scores_before(finished: Sequence[Artifact], step_id: str) -> list[dict[str, Any]] | None:
    """Score records of the last single model scored before the step ``step_id``."""
    previous = None
    for artifact in finished:
        if artifact.step_id == step_id:
            break
        if artifact.kind == ScoreStep.kind and artifact.record.get("variant") is None:
            previous = artifact
    if previous is None or previous.path is None:
        return None
    return recorded_scores(previous)
