"""Score a loaded model as a recipe's ``eval:`` section asks: scoreboard records + translations.jsonl."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import DataError
from ..io import write_jsonl
from ..languages import check_direction
from ..recipe import EvalConfig, LMEvalConfig, MTEvalConfig
from .datasets import read_lines, read_parallel
from .detectors import detector_records, flags, load_identifier
from .lm import score_texts
from .mt import mt_metrics, sentence_chrf, translate

LM_METRICS = ("bits_per_byte", "bits_per_char", "token_perplexity")
MT_METRICS = ("chrf++", "bleu")
TRANSLATIONS_FILE = "translations.jsonl"


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
    """Evaluate ``model`` (already loaded, on its device) and return scoreboard records.

    Records: ``stage, variant, kind ("lm"|"mt"), language|direction, metric, value, n`` plus
    ``prefix_policy`` (LM) or ``signature`` (MT). MT also writes ``out_dir/translations.jsonl``.
    """
    head = {"stage": stage, "variant": variant}
    records: list[dict[str, Any]] = []
    if eval_cfg.lm is not None:
        records += score_lm(model, tokenizer, eval_cfg.lm, head, progress)
    if eval_cfg.mt is not None:
        mt_records, translations = score_mt(model, tokenizer, eval_cfg.mt, head, progress)
        records += mt_records
        write_jsonl(Path(out_dir) / TRANSLATIONS_FILE, translations)
    return records


def score_lm(model, tokenizer, cfg: LMEvalConfig, head: dict, progress: bool) -> list[dict[str, Any]]:
    """Bits per byte, bits per char and token perplexity on the first ``max_sentences`` lines."""
    records = []
    for code in cfg.languages:
        texts = read_lines(cfg.sets, code, cfg.split)[: cfg.max_sentences]
        score = score_texts(model, tokenizer, texts, batch_size=cfg.batch_size, progress=progress)
        for metric in LM_METRICS:
            records.append({**head, "kind": "lm", "language": code, "metric": metric,
                            "value": float(getattr(score, metric)), "n": score.n,
                            "prefix_policy": score.prefix_policy})
    return records


def split_exemplars(pairs: list[tuple[str, str]], max_sentences: int, shots: int, where: str):
    """Scored pairs (the first ``max_sentences``) and exemplars (the last ``shots``), never overlapping."""
    scored = pairs[:max_sentences]
    if len(scored) + shots > len(pairs):
        raise DataError(
            f"{where}: {len(pairs)} sentences cannot give {len(scored)} scored sentences plus {shots} "
            f"exemplars that are never scored; set eval.mt.max_sentences to at most {len(pairs) - shots}"
        )
    return scored, pairs[len(pairs) - shots:]


def score_mt(
    model, tokenizer, cfg: MTEvalConfig, head: dict, progress: bool
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """chrF++ and BLEU per direction, and one translation record per scored sentence."""
    records, translations = [], []
    identifier = load_identifier(cfg.lid_seed) if cfg.lid_seed is not None else None
    for direction in cfg.directions:
        src, tgt = check_direction(direction)
        pairs = read_parallel(cfg.sets, src, tgt, cfg.split)
        where = f"{cfg.sets}/{{{src},{tgt}}}.{cfg.split}"
        scored, exemplars = split_exemplars(pairs, cfg.max_sentences, cfg.shots, where)
        sources, references = [s for s, _ in scored], [t for _, t in scored]
        hypotheses = translate(model, tokenizer, sources, src, tgt, exemplars=exemplars,
                               batch_size=cfg.batch_size, max_new_tokens=cfg.max_new_tokens,
                               progress=progress)
        metrics = mt_metrics(hypotheses, references)
        for metric in MT_METRICS:
            value, signature = metrics[metric]
            records.append({**head, "kind": "mt", "direction": direction, "metric": metric,
                            "value": float(value), "n": len(scored), "signature": signature})
        rows = _translation_rows(direction, sources, references, hypotheses)
        for row in rows:
            row["flags"] = flags(row["source"], row["hypothesis"], src, tgt, identifier)
        records += detector_records(rows, **head, direction=direction)
        translations += rows
    return records, translations


def _translation_rows(direction: str, sources: list[str], references: list[str], hypotheses: list[str]):
    rows = zip(sources, references, hypotheses, strict=True)
    return [
        {"direction": direction, "index": index, "source": source, "reference": reference,
         "hypothesis": hypothesis, "chrf": sentence_chrf(hypothesis, reference)}
        for index, (source, reference, hypothesis) in enumerate(rows)
    ]
