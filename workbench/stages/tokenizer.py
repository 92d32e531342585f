"""tokenizer: a target vocabulary from the crawl output, transplanted into the model (extend, replace, trim)."""

from __future__ import annotations

from typing import Any

from ..errors import DataError
from ..tasks import PROTECTION_LIMIT, GateConfig, TokenizerConfig, default_protect, gate_verdict, transplant
from .base import Stage, StageContext
from .corpus import corpus_texts

__all__ = ["PROTECTION_LIMIT", "GateConfig", "TokenizerConfig", "TokenizerStage", "default_protect",
           "fertility_records"]  # the config and the protection rule live with the task (workbench.tasks)


class TokenizerStage(Stage):
    kind = "tokenizer"
    version = "8"  # covers: which pieces extend/replace add (mark-joining pre-tokenizer, the default protected
    # languages), the rows they get, trim's kept pieces, the fertility report (all made by workbench.tasks.transplant)
    key_exclude = frozenset({"gate.action"})  # failing or warning reads the same scores
    Config = TokenizerConfig
    requires = ("crawl",)
    produces_model = True

    def run(self, ctx: StageContext) -> dict[str, Any]:
        cfg = self.config
        language = cfg.language or ctx.recipe.languages.target
        crawl = ctx.artifact("crawl")

        def corpus(code: str) -> list[str]:
            return corpus_texts(crawl.path, crawl.record, code)

        texts = corpus(language)
        if not texts:
            raise DataError(f"the crawl found no '{language}' text to train a tokenizer on; "
                             "check the crawl stage's inputs and lid_seed")
        replay = {code: corpus(code) for code in ctx.recipe.languages.replay if code != language}
        protect_elsewhere = [t for code in cfg.protect or () if code not in replay for t in corpus(code)]
        done = transplant(ctx.latest_model().path, texts, ctx.out_dir / "model", cfg, language=language,
                          replay=replay, protect=protect_elsewhere, lm=ctx.recipe.eval.lm, seed=ctx.seed,
                          log=ctx.log)
        ctx.write_json("fertility.json", done.fertility)
        ctx.write_json("scores.json", fertility_records(ctx.step_id, done.fertility))
        ctx.write_json("new_tokens.json", done.new_tokens())
        return {"models": [{"path": "model", "variant": None}],
                "outputs": {"new_tokens": "new_tokens.json", "fertility": "fertility.json"},
                "scores": "scores.json", "stats": done.stats()}

    def gate(self, before: list[dict[str, Any]], after: list[dict[str, Any]], languages: Any) -> dict[str, Any]:
        """Bits per byte after the transplant against the model before it (:func:`workbench.tasks.gate_verdict`)."""
        return gate_verdict(self.config.gate, before, after, target=languages.target, replay=languages.replay)


FERTILITY_METRICS = ("tokens_per_word", "tokens_per_char", "byte_fallback_rate")


def fertility_records(stage: str, report: dict[str, dict[str, dict[str, float]]]) -> list[dict[str, Any]]:
    """Scoreboard records of kind ``tokenizer``: the base tokenizer as stage ``base``, the new one as ``stage``."""
    return [{"stage": name, "variant": None, "kind": "tokenizer", "language": code, "metric": metric,
             "value": float(entry[when][metric]), "n": int(entry[when]["tokens"])}
            for name, when in (("base", "before"), (stage, "after"))
            for code, entry in report.items()
            for metric in FERTILITY_METRICS]
