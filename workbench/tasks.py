"""Flows that the recipe's stages, the command line, the app and the notebook share: one function each.

:func:`transplant` gives a model a target-language vocabulary (the tokenizer stage, ``workbench transplant`` and
``wb.transplant``): it takes the tokenizer stage's own :class:`TokenizerConfig`, the corpora and the base model,
writes the new model directory and measures fertility before and after. :func:`gate_verdict` is the transplant's
quality gate on bits per byte before and after, however those were scored.

:func:`load_and_score` loads a model and scores it as an ``eval:`` section asks (the score step, ``workbench eval``
and :func:`~workbench.compare.compare_adapters`); :func:`load_for_scoring`, its first half, loads any model source
with its adapter (the notebook's ``wb.load``).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, model_validator
from transformers import AutoTokenizer

from .errors import DataError, RecipeError
from .evaluate.scorer import lm_texts, score_model
from .io import atomic_write_json
from .models import load_for_eval, load_model, pick_device, resolve_model
from .recipe import EvalConfig, LMEvalConfig
from .schema import LanguageCode, StrictModel
from .stages.base import ModelRef
from .tokenize.fertility import fertility
from .tokenize.gate import gate_failures, gate_rows
from .tokenize.transplant import (
    TransplantConfig,
    chat_renderings,
    check_special_contract,
    save_model_dir,
)
from .tokenize.transplant import transplant as transplant_vocabulary
from .tokenize.vocab import VocabPlan, load_backend, protection_cost, row_budget, text_scripts
from .tokenize.wordlists import trim_words

# ------------------------------------------------------------------------------------- load, then score


def load_for_scoring(model: str | Path | ModelRef, *, adapter: str | Path | None = None, device: str | None = None,
                     dtype: str = "auto") -> tuple[Any, Any]:
    """Load a model to score: a source (``hf:<repo>``, a short name, a directory) or a :class:`ModelRef`, with
    ``adapter`` (or the reference's) merged into a copy of it, on ``device`` (default: the best available) in
    ``dtype`` (``auto``: bfloat16 where the device has it natively)."""
    if isinstance(model, ModelRef):
        ref = ModelRef(model.path, Path(adapter) if adapter else model.adapter, model.variant)
    else:
        ref = ModelRef(resolve_model(str(model)).path, Path(adapter) if adapter else None)
    return load_for_eval(ref, device=pick_device(device), dtype=dtype)


def load_and_score(model: str | Path | ModelRef, eval_cfg: EvalConfig, out_dir: Path, *, stage: str,
                   variant: str | None = None, adapter: str | Path | None = None, device: str | None = None,
                   dtype: str = "auto", progress: bool = True) -> list[dict[str, Any]]:
    """Load ``model`` (:func:`load_for_scoring`) and score it as ``eval_cfg`` asks: the per-sentence files go to
    ``out_dir``; returns the scoreboard records, labelled ``stage``/``variant``. The model is freed on return."""
    loaded, tokenizer = load_for_scoring(model, adapter=adapter, device=device, dtype=dtype)
    try:
        return score_model(loaded, tokenizer, eval_cfg, stage=stage, variant=variant, out_dir=Path(out_dir),
                           progress=progress)
    finally:
        del loaded


# ------------------------------------------------------------------------------------- vocabulary transplant


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

    def planned_new_rows(self) -> int:
        """Embedding rows the memory plan expects this stage to add before it runs (extend: max_new_tokens, or
        half of vocab_size; 0 otherwise)."""
        return (self.max_new_tokens or max(self.vocab_size // 2, 1)) if self.mode == "extend" else 0

    def uses_word_lists(self) -> bool:
        """Whether trim takes pieces from word lists (``keep_words`` or a ``trim_rows`` budget)."""
        return self.mode == "trim" and (self.keep_words > 0 or self.trim_rows is not None)

    def options(self, base_rows: int, seed: int) -> TransplantConfig:
        """The library's transplant options for a base with ``base_rows`` embedding rows."""
        return TransplantConfig(mode=self.mode, vocab_size=self.vocab_size, max_new_tokens=self.max_new_tokens,
                                min_frequency=self.min_frequency, init=self.init, neighbours=self.neighbours,
                                mix=self.mix, shrink=self.shrink, fresh=self.fresh,
                                pad_to_multiple_of=self.pad_to_multiple_of, drop_reserved=self.drop_reserved,
                                max_rows=row_budget(self.trim_rows, base_rows) if self.mode == "trim" else None,
                                join_marks=self.join_marks, seed=seed)


PROTECTION_LIMIT = 0.5
"""A replay language is protected by default unless that would forbid this share of the target's piece pairs."""

ENGLISH = "eng_Latn"
"""The base model's own language: its word lists serve trim and the gate checks it, whatever the replay languages."""

FERTILITY_SAMPLE = 1000
"""Corpus texts fertility is measured on for the target when no held-out set of it is given."""

CORPUS_KEY = "corpus"
"""The fertility report's key for the corpus sample when the target's language code is not known."""


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
    if cfg.mode == "trim":
        return list(replay), {}
    scripts = text_scripts(texts) if cfg.join_marks else []
    costs = {code: round(protection_cost(spec, texts, lines, join_scripts=scripts), 4)
             for code, lines in replay.items()}
    return [code for code in replay if code == ENGLISH or costs[code] < PROTECTION_LIMIT], costs


@dataclass
class Transplanted:
    """A transplanted model written to ``model_dir``, and what the transplant did."""

    model_dir: Path
    language: str | None
    training_texts: int
    plan: VocabPlan
    init: dict[str, Any]
    """The initialization report (:func:`~workbench.tokenize.transplant.apply_plan`)."""
    protected: list[str]
    protection_cost: dict[str, float]
    protected_texts: int
    word_counts: dict[str, Any]
    """trim with word lists: words kept per language (the budget's under ``"fill"``)."""
    fertility: dict[str, dict[str, dict[str, float]]]
    """``{language: {"before": fertility, "after": fertility}}`` (:func:`~workbench.tokenize.fertility.fertility`)."""
    gate: dict[str, Any] | None = None
    """:func:`gate_verdict` on held-out scores before and after, when :func:`transplant` was asked to score them."""

    @property
    def fertility_key(self) -> str:
        """The fertility report's entry for the target (its code, or :data:`CORPUS_KEY`)."""
        return self.language or CORPUS_KEY

    def fertility_summary(self) -> dict[str, float]:
        """Tokens per word of the target before and after, and the share of tokens saved."""
        target = self.fertility[self.fertility_key]
        return {"tokens_per_word_before": round(target["before"]["tokens_per_word"], 4),
                "tokens_per_word_after": round(target["after"]["tokens_per_word"], 4),
                "token_reduction": round(1 - target["after"]["tokens"] / max(target["before"]["tokens"], 1), 4)}

    def new_tokens(self) -> list[dict[str, Any]]:
        """The initialized rows: ``[{"id", "piece"}]`` in id order."""
        return [{"id": i, "piece": p} for i, p in sorted(self.plan.pieces.items())]

    def trim_budget(self) -> dict[str, Any]:
        """trim with a row budget: the budget, the rows it filled and whether the corpora alone needed more."""
        stats = self.plan.stats
        return {k: stats[k] for k in ("max_rows", "filled_rows", "over_budget")} if "max_rows" in stats else {}

    def stats(self) -> dict[str, Any]:
        """What the tokenizer stage records: training data, protection, rows added and their initialization,
        fertility, the word lists and the trim budget."""
        stats = self.plan.stats
        return {"language": self.language, "training_texts": self.training_texts, "protected": self.protected,
                **({"protection_cost": self.protection_cost} if self.protection_cost else {}),
                "protected_texts": self.protected_texts,
                **{k: stats[k] for k in ("join_marks", "join_scripts") if k in stats},
                "added_tokens": len(self.plan.pieces), "init": self.init, "fertility": self.fertility_summary(),
                **({"keep_words": self.word_counts} if self.word_counts else {}),
                **({"trim": self.trim_budget()} if self.trim_budget() else {})}


def _ignore(event: str, **fields: Any) -> None:
    """A ``log`` that records nothing."""


def transplant(source: str | Path, texts: Sequence[str], out: str | Path,
               config: TokenizerConfig | Mapping[str, Any] | None = None, *, language: str | None = None,
               replay: Mapping[str, Sequence[str]] | None = None, protect: Sequence[str] = (),
               keep: Sequence[str] = (), lm: LMEvalConfig | None = None, score_gate: bool = False, seed: int = 0,
               progress: bool = True, log: Callable[..., None] = _ignore) -> Transplanted:
    """Give the model ``source`` a vocabulary for ``texts`` as ``config`` says; write it to ``out``.

    ``source``: a model source (``hf:<repo>``, a short name, a directory; a :class:`~pathlib.Path` is always a
    local directory). ``config``: the tokenizer stage's settings (a mapping is validated into one; None: the
    defaults). ``language``: the code of ``texts`` (None when unknown: no word list of its own). ``replay``: the
    other languages' corpora by code, as a recipe's replay languages: trim and replace keep their pieces, extend
    protects those ``config.protect`` names (by default :func:`default_protect`'s choice), and their word lists
    serve ``keep_words``/``trim_rows`` together with the target's and English's. ``protect``/``keep``: more text
    always protected (extend) or kept (trim, replace). ``lm``: held-out sentences per language that fertility is
    measured on (the target's falls back to the first :data:`FERTILITY_SAMPLE` corpus texts); with
    ``score_gate``, bits per byte on them before and after decide ``config.gate`` (a recipe's engine scores
    them itself). ``seed``: the seed of random row initialization. ``log(event, **fields)`` hears what a run
    records.

    Raises :class:`~workbench.errors.DataError` when the saved tokenizer breaks the special-token contract.
    """
    cfg = config if isinstance(config, TokenizerConfig) else TokenizerConfig.model_validate(config or {})
    out = Path(out)
    replay = {code: list(lines) for code, lines in (replay or {}).items() if code != language}
    keep_texts = [t for lines in replay.values() for t in lines] + list(keep)
    forms, fill, word_counts = [], {}, {}
    if cfg.uses_word_lists():
        word_languages = [code for code in (language, *replay, ENGLISH) if code]
        forms, fill, word_counts = trim_words(dict.fromkeys(word_languages), cfg.keep_words,
                                              fill=cfg.trim_rows is not None)
    keep_texts += forms
    path = source if isinstance(source, Path) else resolve_model(source).path
    model, tokenizer = load_model(path, device="cpu", dtype="float32")
    spec = load_backend(path, tokenizer)
    protected, costs = cfg.protect, {}
    if protected is None:
        protected, costs = default_protect(spec, list(texts), replay, cfg)
        if len(protected) < len(replay):
            log("tokenizer_protection_skipped", protected=protected, costs=costs, limit=PROTECTION_LIMIT)
    protect_texts = [t for code in protected for t in replay.get(code, ())] + list(protect)
    options = cfg.options(model.get_input_embeddings().weight.shape[0], seed)
    plan, init = transplant_vocabulary(model, spec, texts, options, protect=protect_texts, keep=keep_texts,
                                       chat=chat_renderings(tokenizer), chat_template=tokenizer.chat_template,
                                       fill=fill)
    if plan.stats.get("over_budget"):
        log("trim_over_budget", rows=plan.rows, max_rows=options.max_rows)
    save_model_dir(model, tokenizer, plan.spec, out)
    problems = check_special_contract(tokenizer, out, plan)
    if problems:
        raise DataError(f"the transplanted tokenizer in {out} breaks the special-token contract: "
                        + "; ".join(problems))
    sets = held_out_texts(lm)
    sets.setdefault(language or CORPUS_KEY, list(texts[:FERTILITY_SAMPLE]))
    new_tokenizer = AutoTokenizer.from_pretrained(out)
    report = {code: {"before": fertility(tokenizer, lines), "after": fertility(new_tokenizer, lines)}
              for code, lines in sets.items()}
    done = Transplanted(model_dir=out, language=language, training_texts=len(texts), plan=plan, init=init,
                        protected=protected, protection_cost=costs, protected_texts=len(protect_texts),
                        word_counts=word_counts, fertility=report)
    log("vocabulary_transplanted", mode=cfg.mode, rows=plan.rows, new_rows=len(plan.pieces),
        **done.fertility_summary())
    if score_gate and lm is not None:
        before, after = (_lm_scores(model_dir, lm, progress) for model_dir in (path, out))
        done.gate = gate_verdict(cfg.gate, before, after, target=language, replay=list(replay))
    return done


def held_out_texts(lm: LMEvalConfig | None) -> dict[str, list[str]]:
    """The LM evaluation sentences per language (none without an LM evaluation)."""
    return {code: lm_texts(lm, code) for code in lm.languages} if lm is not None else {}


def _lm_scores(model_dir: Path, lm: LMEvalConfig, progress: bool) -> list[dict[str, Any]]:
    """Score records of the model in ``model_dir`` on ``lm``, loaded as a recipe's scoring loads it."""
    with tempfile.TemporaryDirectory() as sentences:
        return load_and_score(model_dir, EvalConfig(lm=lm, contamination=None), Path(sentences),
                              stage="transplant", progress=progress)


def gate_verdict(gate: GateConfig, before: Sequence[dict[str, Any]], after: Sequence[dict[str, Any]], *,
                 target: str | None, replay: Sequence[str]) -> dict[str, Any]:
    """The transplant's gate on score records of the model before and after it (see :mod:`.tokenize.gate`):
    the languages ``gate.languages`` names (default: ``replay`` and English), never the target, may not lose
    more than ``gate.max_regression`` in bits per byte."""
    rows = gate_rows(before, after)
    checked = gate.languages if gate.languages is not None else [*replay, ENGLISH]
    failures = gate_failures(rows, target=target or "", max_regression=gate.max_regression,
                             languages=[code for code in checked if code != target])
    return {"rows": rows, "failures": failures, "action": gate.action, "max_regression": gate.max_regression}


# ------------------------------------------------------------------------------------- outside recipes

REPORT_FILE = "transplant.json"
"""The report :func:`transplant_files` writes into the model directory."""


def read_corpus(paths: Sequence[Path]) -> list[str]:
    """Texts of ``.txt`` (one per line) and ``.jsonl`` (field ``text``) files; blank lines skipped."""
    texts: list[str] = []
    for path in map(Path, paths):
        with path.open(encoding="utf-8", errors="replace") as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                if path.suffix == ".jsonl":
                    try:
                        text = json.loads(line)["text"]
                    except (ValueError, KeyError, TypeError):
                        raise DataError(f"{path}, line {number}: not a JSON object with a 'text' field") from None
                    texts.append(str(text))
                else:
                    texts.append(line.rstrip("\n"))
    if not texts:
        raise DataError(f"no text in {', '.join(map(str, paths))}: give one text per line (.txt) or JSONL "
                        "with a 'text' field")
    return texts


def transplant_files(source: str, corpus: Sequence[Path], out: Path, config: TokenizerConfig, *,
                     target: str | None = None, languages: Sequence[str] = (),
                     replay: Mapping[str, Sequence[Path]] | None = None, protect: Sequence[Path] = (),
                     keep: Sequence[Path] = (), lm: LMEvalConfig | None = None, seed: int = 0,
                     progress: bool = True, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """:func:`transplant` on text files, as ``workbench transplant`` runs it; writes :data:`REPORT_FILE` into
    ``out`` and returns that report (with the gate when ``lm`` gives held-out sets).

    ``target``: the corpus's language (default: ``config.language``). ``languages``: the languages of the run
    besides it, as a recipe's replay languages (their word lists, the gate's checks) whether or not ``replay``
    gives a corpus for them; ``replay``: files per such language.
    """
    language = config.language or target
    replay = dict(replay or {})
    codes = dict.fromkeys([*(code for code in languages if code != language), *replay])
    replay_texts = {code: read_corpus(replay[code]) if code in replay else [] for code in codes}
    texts = read_corpus(corpus)

    def log(event: str, **fields: Any) -> None:
        if event == "tokenizer_protection_skipped":
            echo(f"  not protected (sharing the new pieces, checked by the gate): "
                 f"{', '.join(code for code in fields['costs'] if code not in fields['protected'])}")
        elif event == "trim_over_budget":
            echo(f"  the corpora alone need {fields['rows']} rows, more than the budget of {fields['max_rows']}: "
                 "all kept")

    done = transplant(source, texts, out, config, language=language, replay=replay_texts,
                      protect=read_corpus(protect) if protect else (), keep=read_corpus(keep) if keep else (),
                      lm=lm, score_gate=lm is not None, seed=seed, progress=progress, log=log)
    report: dict[str, Any] = {
        "source": source, "mode": config.mode, "config": config.model_dump(mode="json"), "seed": seed,
        "corpus": [str(p) for p in corpus], "texts": len(texts), "language": language,
        "replay": {code: [str(p) for p in paths] for code, paths in replay.items()},
        "protected": done.protected, "transplant": done.init, "keep_words": done.word_counts,
        "trim": done.trim_budget(), "fertility": done.fertility[done.fertility_key],
        "fertility_by_language": done.fertility, **({"gate": done.gate} if done.gate is not None else {}),
    }
    before, after = report["fertility"]["before"], report["fertility"]["after"]
    echo(f"{config.mode}: {done.init['base_rows']} -> {done.plan.rows} embedding rows, {len(done.plan.pieces)} "
         f"initialized ({config.init}); tokens per word on {done.fertility_key} {before['tokens_per_word']:.3f} -> "
         f"{after['tokens_per_word']:.3f}")
    for row in (done.gate or {}).get("rows", []):
        echo(f"  {row['language']:10s} {row['metric']:14s} {row['before']:.4f} -> {row['after']:.4f} "
             f"({row['ratio']:.3f}x)")
    atomic_write_json(out / REPORT_FILE, report)
    echo(f"model written to {out}; report in {out / REPORT_FILE}")
    return report


def tokenizer_config(file: Path | None = None, values: Mapping[str, Any] | None = None,
                     settings: Sequence[str] = (), *, source: str = "tokenizer settings") -> TokenizerConfig:
    """A :class:`TokenizerConfig` from layers, each over the one before: the defaults, ``file`` (YAML: the keys of
    a recipe's ``tokenizer:`` stage, optionally under a ``tokenizer`` key), ``values`` (dotted field -> value,
    e.g. a command's flags) and ``settings`` (``key=value`` strings, dotted for the gate, YAML values:
    ``gate.languages=[eng_Latn]``). Problems raise one :class:`~workbench.errors.RecipeError` starting with
    ``source`` and naming each field."""
    raw: dict[str, Any] = {}
    if file is not None:
        try:
            loaded = yaml.safe_load(Path(file).read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as err:
            raise RecipeError(f"{source}: cannot read {file}: {err}") from None
        loaded = loaded.get("tokenizer", loaded) if isinstance(loaded, dict) and len(loaded) == 1 else loaded
        if not isinstance(loaded, dict):
            raise RecipeError(f"{source}: {file} is not a mapping of the tokenizer stage's keys")
        raw = loaded
    for key, value in (values or {}).items():
        _set_dotted(raw, key, value)
    for setting in settings:
        key, sep, text = setting.partition("=")
        if not sep or not key.strip():
            raise RecipeError(f"{source}: '{setting}' is not KEY=VALUE (e.g. neighbours=4, gate.action=warn)")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            value = text
        _set_dotted(raw, key.strip(), value)
    try:
        return TokenizerConfig.model_validate(raw)
    except ValidationError as err:
        raise RecipeError(f"{source}: " + "; ".join(_problem(error) for error in err.errors())) from None


def _set_dotted(raw: dict[str, Any], key: str, value: Any) -> None:
    """``raw[a][b] = value`` for the dotted ``key`` ``a.b``."""
    *parents, leaf = key.split(".")
    node = raw
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise RecipeError(f"'{key}': '{part}' is not a section")
    node[leaf] = value


def _problem(error: Any) -> str:
    """One validation problem of a :class:`TokenizerConfig`, named by its field path."""
    where = ".".join(str(part) for part in error["loc"])
    if error["type"] == "extra_forbidden":
        section = GateConfig if error["loc"][:1] == ("gate",) else TokenizerConfig
        return f"{where}: unknown key; allowed: {', '.join(section.model_fields)}"
    message = error["msg"].removeprefix("Value error, ")
    shown = error.get("input")
    if error["type"] != "value_error" and not isinstance(shown, (dict, list)):
        message += f" (got {shown!r})"
    return f"{where}: {message}" if where else message
