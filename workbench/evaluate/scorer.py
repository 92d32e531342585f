"""Score a loaded model as a recipe's ``eval:`` section asks, one sentence at a time on disk.

Scoring happens in two parts, so that a score can be recomputed on a subset (e.g. without the
evaluation sentences found in training data) without running any model again:

1. :func:`score_model` runs the model and writes the per-sentence results into the step directory:
   ``lm_sentences.jsonl`` (bits, bytes, characters and tokens of every LM sentence, and the bits of
   its second half given its first half) and ``translations.jsonl`` (source, reference, hypothesis,
   sentence chrF++, detector flags and token budget of every MT sentence; the ``truncated`` flag
   becomes the ``truncated_rate`` record like any detector's);
2. :func:`records_from_sentences` turns those rows into scoreboard records, leaving out any
   excluded sentence indices (``excluded`` then says how many).

Which sentences are scored (:func:`lm_texts`, :func:`mt_split`) is defined here once; the
contamination check (:func:`eval_sentence_sets`) indexes exactly those.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..errors import DataError
from ..io import read_jsonl, tree_fingerprint, write_jsonl
from ..languages import check_direction
from ..recipe import EvalConfig, LMEvalConfig, MTEvalConfig
from ..store import LM_SENTENCES_FILE, TRANSLATIONS_FILE
from .datasets import has_splits, load_pairs, load_texts
from .detector_names import TRUNCATED
from .detectors import calibrate, detector_records, load_identifier, reference_records
from .lm import LMScore, score_each
from .mt import mt_metrics, sentence_chrf, skipped_metrics, translate_each
from .prompts import prompt_style
from .surprisal import parallel_surprisal

LM_METRICS = ("bits_per_byte", "bits_per_char", "token_perplexity")
FLOOR_METRICS = ("bits_per_byte", "bits_per_char")
MT_METRICS = ("chrf++", "bleu", "spbleu")

Exclusion = Mapping[str, set[int]]  # set name (see eval_sentence_sets) -> sentence indices to leave out


# -- which sentences are scored --------------------------------------------------------------------------


def lm_texts(cfg: LMEvalConfig, code: str) -> list[str]:
    """The LM sentences of one language: the first ``max_sentences`` of the set."""
    return load_texts(cfg.sets, code, cfg.split)[: cfg.max_sentences]


def split_exemplars(pairs: list[tuple[str, str]], max_sentences: int, shots: int, where: str):
    """Scored pairs (the first ``max_sentences``) and exemplars (the last ``shots``), never overlapping."""
    scored = pairs[:max_sentences]
    if len(scored) + shots > len(pairs):
        raise DataError(
            f"{where}: {len(pairs)} sentences cannot give {len(scored)} scored sentences plus {shots} "
            f"exemplars that are never scored; set eval.mt.max_sentences to at most {len(pairs) - shots}"
        )
    return scored, pairs[len(pairs) - shots:]


def mt_split(cfg: MTEvalConfig, direction: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """``(scored pairs, exemplars)`` of a direction.

    Exemplars come from ``exemplar_split`` (default ``dev``). When that is the scored split, or the set has
    no splits (parallel folder, TSV, JSONL), they are its last ``shots`` pairs and the scored pairs are
    the first ``max_sentences``: the two never overlap (a :class:`DataError` says how to fix a set too
    small for both).
    """
    src, tgt = check_direction(direction)
    pairs = load_pairs(cfg.sets, src, tgt, cfg.split)
    where = f"{cfg.sets} ({direction}, split '{cfg.split}')"
    if not has_splits(cfg.sets) or cfg.exemplar_split == cfg.split:
        return split_exemplars(pairs, cfg.max_sentences, cfg.shots, where)
    exemplars = load_pairs(cfg.sets, src, tgt, cfg.exemplar_split)[: cfg.shots] if cfg.shots else []
    return pairs[: cfg.max_sentences], exemplars


CALIBRATION_PAIRS = 16  # unscored pairs on which a direction's generation budgets are measured


def calibration_pairs(cfg: MTEvalConfig, direction: str) -> list[tuple[str, str]]:
    """Pairs never scored on which the generation budgets are measured (target/source length ratio, the
    tokenizer's tokens per target character): up to :data:`CALIBRATION_PAIRS` of the exemplar split, or,
    when exemplars come from the scored split, of its pairs after the scored ones (exemplars included)."""
    src, tgt = check_direction(direction)
    if has_splits(cfg.sets) and cfg.exemplar_split != cfg.split:
        return load_pairs(cfg.sets, src, tgt, cfg.exemplar_split)[:CALIBRATION_PAIRS]
    unscored = load_pairs(cfg.sets, src, tgt, cfg.split)[cfg.max_sentences:]
    return unscored[-CALIBRATION_PAIRS:]


def eval_sentence_sets(eval_cfg: EvalConfig) -> dict[str, list[str]]:
    """Every scored sentence, by set name: ``lm:<code>``, ``mt:<direction>:source``, ``mt:<direction>:reference``.

    Index ``i`` of a set is row ``i`` of the scorer's per-sentence files, so flagged indices exclude exactly
    the sentences they name.
    """
    sets: dict[str, list[str]] = {}
    if eval_cfg.lm is not None:
        for code in eval_cfg.lm.languages:
            sets[f"lm:{code}"] = lm_texts(eval_cfg.lm, code)
    if eval_cfg.mt is not None:
        for direction in eval_cfg.mt.directions:
            scored, _ = mt_split(eval_cfg.mt, direction)
            sets[f"mt:{direction}:source"] = [s for s, _ in scored]
            sets[f"mt:{direction}:reference"] = [t for _, t in scored]
    return sets


def scores_anything(eval_cfg: EvalConfig) -> bool:
    """Whether an ``eval:`` section asks for LM or MT scores."""
    return eval_cfg.lm is not None or eval_cfg.mt is not None


def eval_fingerprints(eval_cfg: EvalConfig) -> dict[str, str]:
    """Content fingerprints of the evaluation sets (and the language-ID seed), by source (a hub id as itself)."""
    sets = {str(cfg.sets) for cfg in (eval_cfg.lm, eval_cfg.mt) if cfg is not None}
    if eval_cfg.mt is not None and eval_cfg.mt.lid_seed is not None:
        sets.add(str(eval_cfg.mt.lid_seed))
    return {source: source if source.startswith("hf:") else tree_fingerprint(Path(source)) for source in sorted(sets)}


def eval_selection(eval_cfg: EvalConfig) -> dict[str, Any]:
    """What decides which evaluation sentences are scored (not how), with the sets' fingerprints: the identity
    of :func:`eval_sentence_sets`."""
    lm, mt = eval_cfg.lm, eval_cfg.mt
    return {
        "lm": lm.model_dump(mode="json", include={"sets", "split", "languages", "max_sentences"}) if lm else None,
        "mt": mt.model_dump(mode="json", include={"sets", "split", "exemplar_split", "directions", "max_sentences",
                                                  "shots"}) if mt else None,
        "sets": eval_fingerprints(eval_cfg),
    }


# -- running a model ---------------------------------------------------------------------------------------


def score_model(
    model,
    tokenizer,
    eval_cfg: EvalConfig,
    *,
    stage: str,
    variant: str | None,
    out_dir: Path,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Evaluate ``model`` (already loaded, on its device): write the per-sentence files into ``out_dir``
    and return the scoreboard records (see :func:`records_from_sentences`)."""
    out_dir = Path(out_dir)
    lm_rows = lm_sentence_rows(model, tokenizer, eval_cfg.lm, progress) if eval_cfg.lm is not None else []
    translations = translation_rows(model, tokenizer, eval_cfg.mt, progress) if eval_cfg.mt is not None else []
    if eval_cfg.lm is not None:
        write_jsonl(out_dir / LM_SENTENCES_FILE, lm_rows)
    if eval_cfg.mt is not None:
        write_jsonl(out_dir / TRANSLATIONS_FILE, translations)
    return records_from_sentences(eval_cfg, {"stage": stage, "variant": variant}, lm_rows, translations)


def lm_sentence_rows(model, tokenizer, cfg: LMEvalConfig, progress: bool) -> list[dict[str, Any]]:
    """Per sentence: bits, bytes, chars, tokens (and the surprisal of its second half, if asked for)."""
    rows = []
    for code in cfg.languages:
        texts = lm_texts(cfg, code)
        each = score_each(model, tokenizer, texts, batch_size=cfg.batch_size, max_length=cfg.max_length,
                          stride=cfg.stride, progress=progress)
        halves = None
        if cfg.surprisal:
            try:
                halves = parallel_surprisal(model, tokenizer, [t for t in texts if t.strip()],
                                            batch_size=cfg.batch_size)
            except ValueError:  # a half longer than the model's positions: texts, not sentences; no surprisal
                halves = None
        surprisal = iter(zip(halves.sentence_bits, halves.sentence_bytes, strict=True)) if halves else None
        for index, (text, score) in enumerate(zip(texts, each, strict=True)):
            row = {"language": code, "index": index, "bits": score.bits, "bytes": score.bytes,
                   "chars": score.chars, "tokens": score.tokens, "prefix_policy": score.prefix_policy}
            if surprisal is not None and text.strip():
                row["surprisal_bits"], row["surprisal_bytes"] = next(surprisal)
            rows.append(row)
    return rows


def floor_sentence_rows(floor_models: Mapping[str, Any], cfg: LMEvalConfig) -> list[dict[str, Any]]:
    """The rows of :func:`lm_sentence_rows` for character n-gram models (one per language)."""
    rows = []
    for code in cfg.languages:
        model = floor_models.get(code)
        if model is None:
            continue
        for index, text in enumerate(lm_texts(cfg, code)):
            score = model.score([text])
            rows.append({"language": code, "index": index, "bits": score.bits, "bytes": score.bytes,
                         "chars": score.chars, "tokens": score.tokens, "prefix_policy": score.prefix_policy})
    return rows


def translation_rows(model, tokenizer, cfg: MTEvalConfig, progress: bool) -> list[dict[str, Any]]:
    """One row per scored sentence and direction: source, reference, hypothesis, sentence chrF++, flags
    (``truncated`` among them: the translation used its whole token budget, ``budget_tokens``)."""
    identifier = load_identifier(cfg.lid_seed) if cfg.lid_seed is not None else None
    style = prompt_style(tokenizer, cfg.prompt)
    rows = []
    for direction in cfg.directions:
        src, tgt = check_direction(direction)
        scored, exemplars = mt_split(cfg, direction)
        on_references = calibrate(scored, src, tgt, identifier)  # the detectors' false alarms
        sources = [s for s, _ in scored]
        translations = translate_each(model, tokenizer, sources, src, tgt, exemplars=exemplars,
                                      calibration=calibration_pairs(cfg, direction), batch_size=cfg.batch_size,
                                      max_new_tokens=cfg.max_new_tokens, prompt=style, progress=progress)
        for index, ((source, reference), translation) in enumerate(zip(scored, translations, strict=True)):
            hypothesis = translation.text
            rows.append({
                "direction": direction, "index": index, "source": source, "reference": reference,
                "hypothesis": hypothesis, "chrf": sentence_chrf(hypothesis, reference),
                "flags": {**on_references.flags(source, hypothesis), TRUNCATED: translation.truncated},
                "reference_flags": on_references.reference_flags[index],
                "off_target_tolerated": list(on_references.tolerated),
                "budget_tokens": translation.budget, "cut_character": translation.cut_character,
                "prompt": f"{style}, {len(exemplars)}-shot",
            })
    return rows


# -- records -----------------------------------------------------------------------------------------------


def lm_excluded(eval_cfg: EvalConfig, exclusion: Exclusion | None) -> set[int]:
    """LM indices to leave out in *every* language: on a multi-way parallel set (the same number of
    sentences per language) a sentence found in training data in one language is excluded in all, so the
    languages keep comparable content."""
    if not exclusion or eval_cfg.lm is None:
        return set()
    return set().union(*(exclusion.get(f"lm:{code}", set()) for code in eval_cfg.lm.languages))


def records_from_sentences(
    eval_cfg: EvalConfig,
    head: Mapping[str, Any],
    lm_rows: Iterable[Mapping[str, Any]],
    translations: Iterable[Mapping[str, Any]],
    exclusion: Exclusion | None = None,
    *,
    floor: bool = False,
) -> list[dict[str, Any]]:
    """Scoreboard records from per-sentence rows, without the sentences ``exclusion`` names.

    LM (per language): ``bits_per_byte`` = Σ bits / Σ UTF-8 bytes, ``bits_per_char``, ``token_perplexity``
    (tokenizer-dependent) and ``surprisal_bits`` (mean bits of a sentence's second half given its first);
    a ``floor`` (character n-gram) gives the first two only. MT (per direction): ``chrf++``, ``bleu`` and
    ``spbleu`` by sacrebleu (BLEU tokenized for the target's script; spBLEU, when its model cannot be had, a
    record with ``value`` None and the ``skipped`` reason), the detector rates and each detector's false-alarm
    rate on the human references (``<detector>_ref_rate``, with a ``warning`` above 5%). With an exclusion each
    record carries ``excluded`` (sentences left out).
    """
    records = []
    if eval_cfg.lm is not None:
        records += _lm_records(eval_cfg, head, list(lm_rows), exclusion, floor)
    if eval_cfg.mt is not None and not floor:
        records += _mt_records(eval_cfg.mt, head, list(translations), exclusion)
    return records


def _lm_records(eval_cfg: EvalConfig, head: Mapping[str, Any], rows: list[Mapping[str, Any]],
                exclusion: Exclusion | None, floor: bool) -> list[dict[str, Any]]:
    dropped = lm_excluded(eval_cfg, exclusion)
    records = []
    for code in eval_cfg.lm.languages:
        mine = [r for r in rows if r["language"] == code]
        if not mine:
            continue
        kept = [r for r in mine if r["index"] not in dropped]
        policy = mine[0]["prefix_policy"]
        extra = {"prefix_policy": policy, **({"excluded": len(mine) - len(kept)} if exclusion is not None else {})}
        score = LMScore(bits=sum(r["bits"] for r in kept), bytes=sum(r["bytes"] for r in kept),
                        chars=sum(r["chars"] for r in kept), tokens=sum(r["tokens"] for r in kept),
                        n=len(kept), prefix_policy=policy)
        for metric in FLOOR_METRICS if floor else LM_METRICS:
            records.append({**head, "kind": "lm", "language": code, "metric": metric,
                            "value": float(getattr(score, metric)), "n": score.n, **extra})
        halves = [r["surprisal_bits"] for r in kept if "surprisal_bits" in r]
        if halves:
            records.append({**head, "kind": "lm", "language": code, "metric": "surprisal_bits",
                            "value": float(sum(halves) / len(halves)), "n": len(halves), **extra})
    return records


def _mt_records(cfg: MTEvalConfig, head: Mapping[str, Any], rows: list[Mapping[str, Any]],
                exclusion: Exclusion | None) -> list[dict[str, Any]]:
    records = []
    for direction in cfg.directions:
        mine = [r for r in rows if r["direction"] == direction]
        dropped = set()
        if exclusion:
            dropped = exclusion.get(f"mt:{direction}:source", set()) | exclusion.get(f"mt:{direction}:reference", set())
        kept = [r for r in mine if r["index"] not in dropped]
        if not kept:
            continue
        extra = {"excluded": len(mine) - len(kept)} if exclusion is not None else {}
        records += [{**record, **extra} for record in _metric_records(cfg, head, direction, kept)]
        records += [{**record, **extra} for record in _direction_detector_records(head, direction, kept)]
    return records


def _metric_records(cfg: MTEvalConfig, head: Mapping[str, Any], direction: str,
                    kept: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """chrF++, BLEU (tokenized for the target's script) and spBLEU of a direction; a metric that cannot be
    computed here is a record with ``value`` None and ``skipped`` (the reason)."""
    _, tgt = check_direction(direction)
    metrics = mt_metrics([r["hypothesis"] for r in kept], [r["reference"] for r in kept], target=tgt,
                         spbleu=cfg.spbleu)
    skipped = skipped_metrics(spbleu=cfg.spbleu)
    common = {**head, "kind": "mt", "direction": direction, "n": len(kept), "prompt": kept[0].get("prompt")}
    records = []
    for metric in MT_METRICS:
        if metric in metrics:
            value, signature = metrics[metric]
            records.append({**common, "metric": metric, "value": float(value), "signature": signature})
        elif metric in skipped:
            records.append({**common, "metric": metric, "value": None, "skipped": skipped[metric]})
    return records


def _direction_detector_records(head: Mapping[str, Any], direction: str,
                                kept: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The detector rates of the outputs, then each detector's false-alarm rate on the human references
    (``<detector>_ref_rate``); a rate whose detector is above the false-alarm limit carries its warning."""
    where = {"stage": head["stage"], "variant": head["variant"], "direction": direction}
    on_references = reference_records(kept, **where)
    warnings = {r["metric"].removesuffix("_ref_rate"): r["warning"] for r in on_references if "warning" in r}
    records = []
    for record in detector_records(kept, **where):
        name = record["metric"].removesuffix("_rate")
        records.append({**record, "warning": warnings[name]} if name in warnings else record)
    return records + on_references


def rescore_directory(eval_cfg: EvalConfig, head: Mapping[str, Any], directory: Path,
                      exclusion: Exclusion | None, *, floor: bool = False) -> list[dict[str, Any]]:
    """:func:`records_from_sentences` from the per-sentence files a scoring step wrote into ``directory``."""
    directory = Path(directory)
    lm_path, mt_path = directory / LM_SENTENCES_FILE, directory / TRANSLATIONS_FILE
    lm_rows = read_jsonl(lm_path) if lm_path.is_file() else []
    translations = read_jsonl(mt_path) if mt_path.is_file() else []
    return records_from_sentences(eval_cfg, head, lm_rows, translations, exclusion, floor=floor)
