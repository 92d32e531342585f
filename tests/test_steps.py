"""Every step kind is a plug-in of one registry: a new scoring step runs through the engine unchanged, and the
score step loads and scores a model exactly as ``workbench eval`` does."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from workbench.cli import cli
from workbench.engine import build_steps, plan, run_recipe
from workbench.recipe import EvalConfig, Recipe, load_recipe
from workbench.stages import SCORING_CLASSES, STAGES, STEPS, register
from workbench.stages.base import ScoringStep, StageContext, Subject
from workbench.stages.corpus import corpus_texts
from workbench.store import SCORES_FILE, RunStore

from .conftest import FIXTURES, STORIES, tiny_recipe, write_recipe


class DocumentCount(ScoringStep):
    """Documents per language in the corpora of every stage that produces them."""

    kind = "documents"
    version = "1"
    Config = EvalConfig

    @classmethod
    def follow(cls, recipe: Recipe, subject: Subject) -> list[ScoringStep]:
        produces = subject.stage is not None and subject.stage.produces_corpus
        return [cls(recipe.eval, subject)] if produces else []

    def key_inputs(self, recipe: Recipe, upstream: list[str]) -> dict[str, Any]:
        return {"corpus": self.subject.key, "languages": recipe.languages.all}

    def run(self, ctx: StageContext) -> dict[str, Any]:
        corpus = ctx.finished_step(self.subject.id)
        records = []
        for code in ctx.recipe.languages.all:
            count = len(corpus_texts(corpus.path, corpus.record, code))
            records.append({"stage": self.subject.id, "variant": self.kind, "kind": "corpus", "language": code,
                            "metric": "documents", "value": float(count), "n": count})
        ctx.write_json(SCORES_FILE, records)
        return {"models": [], "scores": SCORES_FILE, "stage": self.subject.id, "variant": self.kind}


@pytest.fixture
def documents_step():
    register(DocumentCount)
    yield DocumentCount
    SCORING_CLASSES.pop(DocumentCount.kind)


def test_a_registered_scoring_step_runs_through_the_engine(documents_step, tmp_path: Path) -> None:
    recipe = tiny_recipe(eval={}, stages=tiny_recipe()["stages"][:1])  # the crawl alone, nothing else scored
    loaded = load_recipe(write_recipe(tmp_path / "crawl.yaml", recipe))
    assert "documents" in STEPS and "documents" not in STAGES  # a scoring step, not a kind recipes may list
    assert [s.id for s in build_steps(loaded)] == ["base", "crawl", "documents:crawl"]

    workspace = tmp_path / "runs"
    result = run_recipe(loaded, workspace, device="cpu", progress=False, echo=lambda _: None, executor="serial")
    mine = [r for r in result.scoreboard if r["variant"] == "documents"]  # (the crawl reports its own counts)
    counted = {r["language"]: r["value"] for r in mine}
    crawl_dir = Path(next(s["path"] for s in result.steps if s["id"] == "crawl"))
    record = RunStore.read_artifact(crawl_dir)
    assert counted == {code: float(len(corpus_texts(crawl_dir, record, code))) for code in ("srd_Latn", "eng_Latn")}
    assert counted["srd_Latn"] > 0
    step = next(s for s in result.steps if s["id"] == "documents:crawl")
    assert Path(step["path"]).parent == workspace / "tiny" / "scores" and step["status"] == "ran"
    assert json.loads((Path(step["path"]) / SCORES_FILE).read_text()) == mine

    assert {state for _, state in plan(loaded, RunStore(workspace, "tiny"))} == {"base", "cached"}
    again = run_recipe(loaded, workspace, device="cpu", progress=False, echo=lambda _: None, executor="serial")
    assert {s["status"] for s in again.steps} == {"base", "cached"} and again.scoreboard == result.scoreboard


def test_cli_eval_scores_a_model_as_the_score_step_does(finished_run, tmp_path: Path) -> None:
    path, _, result = finished_run
    lm = load_recipe(path).eval.lm
    out = tmp_path / "eval.json"
    invoked = CliRunner().invoke(cli, [
        "eval", "--model", str(STORIES), "--lm-sets", str(FIXTURES / "flores200" / "dev"),
        "--languages", ",".join(lm.languages), "--max-sentences", str(lm.max_sentences), "--out", str(out),
        "--device", "cpu", "--no-progress"])
    assert invoked.exit_code == 0, invoked.output
    from_cli = [{k: v for k, v in r.items() if k not in ("stage", "model")} for r in json.loads(out.read_text())]
    from_engine = [{k: v for k, v in r.items() if k != "stage"} for r in result.scoreboard
                   if r["stage"] == "base" and r["kind"] == "lm"]
    assert from_cli == from_engine and len(from_cli) >= 2 * len(lm.languages)
