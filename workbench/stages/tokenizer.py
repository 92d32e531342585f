"""tokenizer: a target vocabulary from the crawl output, transplanted into the model (extend, replace, trim)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from ..errors import DataError
from ..schema import LanguageCode, StrictModel
from .base import Stage, StageContext
from .corpus import corpus_texts


class GateConfig(StrictModel):
    max_regression: float = Field(0.05, ge=0, description="allowed relative rise of bits per byte on checked languages")
    action: Literal["fail", "warn"] = Field("fail", description="fail the run, or only warn, when the gate trips")
    languages: list[LanguageCode] | None = Field(None, description="languages checked (default: the replay "
                                                                    "languages and English)")


class TokenizerConfig(StrictModel):
    mode: Literal["extend", "replace", "trim"] = Field(
        "extend", description="extend: base + reachable new pieces; replace: a new vocabulary only; "
                              "trim: the base entries the target and replay corpora use")
    vocab_size: int = Field(8000, ge=300, description="replace: size of the new vocabulary; extend: pieces "
                                                      "added when max_new_tokens is not set")
    max_new_tokens: int | None = Field(None, ge=1, description="extend: pieces added to the base")
    min_frequency: int = Field(2, ge=1)
    init: Literal["subtoken", "hybrid", "mean", "focus", "random"] = Field(
        "subtoken", description="initialization of new rows (see workbench.tokenize.init)")
    shrink: float = Field(0.1, ge=0, le=1, description="pull of new rows towards the mean row")
    fresh: bool = Field(False, description="replace: train the vocabulary from characters instead of growing "
                                           "it from the base pieces the corpus uses")
    neighbours: int = Field(8, ge=1, description="hybrid: nearest base rows mixed in")
    mix: float = Field(0.3, ge=0, le=1, description="hybrid: weight of the neighbours against the decomposition")
    protect: list[LanguageCode] | None = Field(
        None, description="extend: languages whose text must tokenize exactly as with the base (default: the "
                          "replay languages, but one other than English whose protection would forbid most of "
                          "the target's piece pairs, like Hindi for a Devanagari target, shares the new pieces "
                          "instead, checked by the gate)")
    join_marks: bool = Field(True, description="extend/replace: let the target script's combining marks (vowel "
                                               "signs) stay in their letter's word when the base pre-tokenizer "
                                               "splits them off (GPT-2/Llama-3 style), so new pieces can span "
                                               "syllables; protected text keeps its exact ids")
    keep_words: int = Field(0, ge=0, description="trim: also keep the base pieces of the N most frequent words of "
                                                 "each replay language and English (wordfreq lists, the "
                                                 "'wordlists' extra), so they work beyond their corpora")
    trim_rows: float | None = Field(None, gt=0, description="trim: the row budget, a share of the base's rows "
                                    "(<= 1) or a count (> 1), filled with the pieces the wordfreq lists of the "
                                    "target, replay languages and English use most, weighted by word frequency "
                                    "(the 'wordlists' extra); the corpora's own pieces always stay")
    pad_to_multiple_of: int | None = Field(None, ge=1, description="pad the embedding rows (e.g. 64)")
    drop_reserved: bool = Field(False, description="trim/replace: also drop the base's reserved placeholder "
                                                   "tokens (Gemma <unusedN>, Llama-3 <|reserved_special_token_N|>) "
                                                   "unless the chat template uses one")
    language: LanguageCode | None = Field(None, description="corpus language to train on (default: target)")
    gate: GateConfig = Field(default_factory=GateConfig)

    @model_validator(mode="after")
    def _trim_only(self) -> TokenizerConfig:
        if self.mode != "trim" and (self.keep_words or self.trim_rows is not None):
            raise ValueError(f"keep_words and trim_rows choose what trim keeps; with mode: {self.mode} they do "
                             "nothing: remove them or set mode: trim")
        return self


class TokenizerStage(Stage):
    kind = "tokenizer"
    version = "8"  # covers: which pieces extend/replace add (mark-joining pre-tokenizer, the default protected
    # languages), the rows they get, trim's kept pieces, the fertility report
    key_exclude = frozenset({"gate.action"})  # failing or warning reads the same scores
    Config = TokenizerConfig
    requires = ("crawl",)
    produces_model = True

    def run(self, ctx: StageContext) -> dict[str, Any]:
        from ..models import load_model
        from ..tokenize.transplant import (
            TransplantConfig,
            chat_renderings,
            check_special_contract,
            save_model_dir,
            transplant,
        )
        from ..tokenize.vocab import load_backend, row_budget

        cfg = self.config
        language = cfg.language or ctx.recipe.languages.target
        crawl = ctx.artifact("crawl")
        texts = corpus_texts(crawl.path, crawl.record, language)
        if not texts:
            raise DataError(f"the crawl found no '{language}' text to train a tokenizer on; "
                             "check the crawl stage's inputs and lid_seed")
        others = [code for code in ctx.recipe.languages.replay if code != language]
        keep_texts = [t for code in others for t in corpus_texts(crawl.path, crawl.record, code)]
        forms, fill, word_counts = [], {}, {}
        if cfg.mode == "trim" and (cfg.keep_words or cfg.trim_rows is not None):
            from ..tokenize.wordlists import trim_words

            forms, fill, word_counts = trim_words(dict.fromkeys([language, *others, "eng_Latn"]), cfg.keep_words,
                                                  fill=cfg.trim_rows is not None)
        keep_texts += forms
        source = ctx.latest_model()
        model, tokenizer = load_model(source.path, device="cpu", dtype="float32")
        spec = load_backend(source.path, tokenizer)
        protect, costs = cfg.protect, {}
        if protect is None:
            protect, costs = default_protect(spec, texts, {code: corpus_texts(crawl.path, crawl.record, code)
                                                           for code in others}, cfg)
            if len(protect) < len(others):
                ctx.log("tokenizer_protection_skipped", protected=protect, costs=costs, limit=PROTECTION_LIMIT)
        protect_texts = [t for code in protect for t in corpus_texts(crawl.path, crawl.record, code)]
        base_rows = model.get_input_embeddings().weight.shape[0]
        options = TransplantConfig(mode=cfg.mode, vocab_size=cfg.vocab_size, max_new_tokens=cfg.max_new_tokens,
                                   min_frequency=cfg.min_frequency, init=cfg.init, neighbours=cfg.neighbours,
                                   mix=cfg.mix, shrink=cfg.shrink, fresh=cfg.fresh,
                                   pad_to_multiple_of=cfg.pad_to_multiple_of, drop_reserved=cfg.drop_reserved,
                                   max_rows=row_budget(cfg.trim_rows, base_rows) if cfg.mode == "trim" else None,
                                   join_marks=cfg.join_marks, seed=ctx.seed)
        plan, init = transplant(model, spec, texts, options, protect=protect_texts, keep=keep_texts,
                                chat=chat_renderings(tokenizer), chat_template=tokenizer.chat_template, fill=fill)
        if plan.stats.get("over_budget"):
            ctx.log("trim_over_budget", rows=plan.rows, max_rows=options.max_rows)
        out = ctx.out_dir / "model"
        save_model_dir(model, tokenizer, plan.spec, out)
        problems = check_special_contract(tokenizer, out, plan)
        if problems:
            raise DataError(f"the transplanted tokenizer in {out} breaks the special-token contract: "
                            + "; ".join(problems))
        report = fertility_report(ctx, tokenizer, out, {language: texts[:1000]})
        ctx.write_json("fertility.json", report)
        ctx.write_json("scores.json", fertility_records(ctx.step_id, report))
        target = report[language]
        fertility = {"tokens_per_word_before": round(target["before"]["tokens_per_word"], 4),
                     "tokens_per_word_after": round(target["after"]["tokens_per_word"], 4),
                     "token_reduction": round(1 - target["after"]["tokens"] / max(target["before"]["tokens"], 1), 4)}
        ctx.log("vocabulary_transplanted", mode=cfg.mode, rows=plan.rows, new_rows=len(plan.pieces), **fertility)
        ctx.write_json("new_tokens.json", [{"id": i, "piece": p} for i, p in sorted(plan.pieces.items())])
        stats = {"language": language, "training_texts": len(texts), "protected": protect,
                 **({"protection_cost": costs} if costs else {}),
                 "protected_texts": len(protect_texts),
                 **{k: plan.stats[k] for k in ("join_marks", "join_scripts") if k in plan.stats},
                 "added_tokens": len(plan.pieces), "init": init, "fertility": fertility,
                 **({"keep_words": word_counts} if word_counts else {}),
                 **({"trim": {k: plan.stats[k] for k in ("max_rows", "filled_rows", "over_budget")}}
                    if "max_rows" in plan.stats else {})}
        return {"models": [{"path": "model", "variant": None}],
                "outputs": {"new_tokens": "new_tokens.json", "fertility": "fertility.json"},
                "scores": "scores.json", "stats": stats}

    def gate(self, before: list[dict[str, Any]], after: list[dict[str, Any]], languages: Any) -> dict[str, Any]:
        """Bits per byte after the transplant against the model before it (see :mod:`workbench.tokenize.gate`)."""
        from ..tokenize.gate import gate_failures, gate_rows

        rows = gate_rows(before, after)
        gate = self.config.gate
        checked = gate.languages if gate.languages is not None else [*languages.replay, "eng_Latn"]
        failures = gate_failures(rows, target=languages.target, max_regression=gate.max_regression,
                                 languages=[code for code in checked if code != languages.target])
        return {"rows": rows, "failures": failures, "action": gate.action, "max_regression": gate.max_regression}


PROTECTION_LIMIT = 0.5
"""A replay language is protected by default unless that would forbid this share of the target's piece pairs."""


def default_protect(spec: dict[str, Any], texts: list[str], replay: dict[str, list[str]],
                    cfg: TokenizerConfig) -> tuple[list[str], dict[str, float]]:
    """The replay languages whose text keeps its exact ids, and each one's protection cost
    (:func:`~workbench.tokenize.vocab.protection_cost`).

    A language in the target's script with most of its syllables (Hindi for a Devanagari target) shares
    nearly every adjacent pair of pieces with it: protecting it left 410 of 4,000 pieces to add. Such a
    language (cost >= :data:`PROTECTION_LIMIT`) shares the new pieces instead, and the gate checks that it
    does not get worse. English, the base's own language, is always protected (on a tiny base vocabulary of
    characters it shares every pair with a Latin target). Trim changes no segmentation: every replay language
    counts as protected.
    """
    from ..tokenize.vocab import protection_cost, text_scripts

    if cfg.mode == "trim":
        return list(replay), {}
    scripts = text_scripts(texts) if cfg.join_marks else []
    costs = {code: round(protection_cost(spec, texts, lines, join_scripts=scripts), 4)
             for code, lines in replay.items()}
    return [code for code in replay if code == "eng_Latn" or costs[code] < PROTECTION_LIMIT], costs


FERTILITY_METRICS = ("tokens_per_word", "tokens_per_char", "byte_fallback_rate")


def fertility_report(ctx: StageContext, base_tokenizer: Any, new_dir: Any,
                     fallback: dict[str, list[str]]) -> dict[str, dict[str, dict[str, float]]]:
    """``{language: {"before": fertility, "after": fertility}}`` on the recipe's LM evaluation sentences
    (every LM language), or on ``fallback`` texts when the recipe scores no LM."""
    from transformers import AutoTokenizer

    from ..evaluate.scorer import lm_texts
    from ..tokenize.fertility import fertility

    lm = ctx.recipe.eval.lm
    sets = {code: lm_texts(lm, code) for code in lm.languages} if lm is not None else {}
    for code, texts in fallback.items():
        sets.setdefault(code, texts)
    new_tokenizer = AutoTokenizer.from_pretrained(new_dir)
    return {code: {"before": fertility(base_tokenizer, texts), "after": fertility(new_tokenizer, texts)}
            for code, texts in sets.items()}


def fertility_records(stage: str, report: dict[str, dict[str, dict[str, float]]]) -> list[dict[str, Any]]:
    """Scoreboard records of kind ``tokenizer``: the base tokenizer as stage ``base``, the new one as ``stage``."""
    return [{"stage": name, "variant": None, "kind": "tokenizer", "language": code, "metric": metric,
             "value": float(entry[when][metric]), "n": int(entry[when]["tokens"])}
            for name, when in (("base", "before"), (stage, "after"))
            for code, entry in report.items()
            for metric in FERTILITY_METRICS]
