"""crawl: WARC/WET archives, Wikipedia dumps and text files -> clean, deduplicated, language-identified corpora."""

from __future__ import annotations

import glob
import shutil
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator

from ..crawl.dedup import NearDeduplicator
from ..crawl.filters import QualityConfig
from ..crawl.langid import GENERAL_SETTINGS, train_identifier
from ..crawl.pipeline import MIN_SCORE, CrawlJob, CrawlSettings, read_wordlist, run_crawl
from ..io import file_fingerprint, read_jsonl
from ..schema import ExistingPath, InputGlob, LanguageCode, StrictModel, existing_path
from .base import Artifact, Stage, StageContext
from .corpus import corpus_files, corpus_texts  # noqa: F401 (corpus_texts: re-exported)


class NearDedupConfig(StrictModel):
    threshold: float = Field(0.8, gt=0, le=1, description="estimated Jaccard similarity that makes a near duplicate")
    num_perm: int = Field(128, ge=16, le=1024, description="MinHash permutations")
    shingle: int = Field(5, ge=1, description="words per shingle (character 5-grams for shorter documents)")


class PrefilterConfig(StrictModel):
    """Drop documents with too few words of a target wordlist before identifying them line by line."""

    wordlist: ExistingPath = Field(description="one word per line (optionally with a count), most frequent first")
    min_hit_rate: float = Field(0.02, ge=0, le=1, description="share of a document's words found in the list")
    top: int | None = Field(None, ge=1, description="use only the first N words of the list")


class CrawlConfig(StrictModel):
    inputs: list[InputGlob] = Field(min_length=1, description="files or globs: .warc(.gz), .wet(.gz), .txt, .jsonl")
    lid_seed: ExistingPath = Field(description="folder of <code>.txt seed texts for the language identifier")
    general_lid: str = Field(
        "fasttext", description="the general language identifier, for languages outside the seed set: fasttext "
                                "(the offline lid.176 model), none (the seed model alone), or the path of a fastText "
                                "model file (GlotLID, OpenLID: .bin/.ftz); never downloaded")
    languages: list[LanguageCode] | None = Field(None, description="languages to keep (default: target + replay)")
    min_chars: int = Field(20, ge=1)
    min_score: float = Field(MIN_SCORE, ge=0.0, le=1.0, description="language-ID score a segment needs to be kept")
    min_scores: dict[LanguageCode, float] = Field(default_factory=dict, description="per-language min_score")
    quality: QualityConfig | None = Field(QualityConfig(), description="quality filters (null: none)")
    near_dedup: NearDedupConfig | None = Field(NearDedupConfig(), description="MinHash-LSH near dedup (null: none)")
    exclude: ExistingPath | list[ExistingPath] | None = Field(
        None, description="JSONL file(s) of documents (field text) never to keep; the run's marked-bad.jsonl "
                          "(documents marked in the app) is added automatically")
    prefilter: PrefilterConfig | None = Field(None, description="target-wordlist hit-rate prefilter (big crawls)")
    extractor: Literal["resiliparse", "trafilatura"] = Field(
        "resiliparse", description="HTML extractor: fast (resiliparse) or precision (trafilatura, in a subprocess)")
    extract_timeout: float = Field(10.0, gt=0, description="seconds per page for the trafilatura extractor")
    executor: Literal["serial", "local", "ray"] = Field(
        "local", description="where shards run: this process, local worker processes, or a Ray cluster")
    processes: int | None = Field(None, ge=1, description="processes, this one included (default: the CPU count, "
                                  "at most one per shard)")
    max_shard_mb: int = Field(64, ge=1, description="input files above this are split into parts that run apart")
    parquet: bool = Field(False, description="also write corpus/<code>.parquet (the same records as the JSONL)")

    @field_validator("general_lid")
    @classmethod
    def _general_lid_exists(cls, value: str, info: ValidationInfo) -> str:
        """``fasttext``, ``none``, or a model file (relative to the recipe's folder, made absolute)."""
        if value in GENERAL_SETTINGS:
            return value
        path = existing_path(Path(value), info)
        if not path.is_file():
            raise ValueError(f"general_lid must be {' or '.join(GENERAL_SETTINGS)} or a fastText model file; "
                             f"'{value}' is neither")
        return str(path)

    def general_lid_file(self) -> Path | None:
        """The fastText model file ``general_lid`` names, if it names one."""
        return Path(self.general_lid) if self.general_lid not in GENERAL_SETTINGS else None

    def exclude_files(self) -> list[Path]:
        """The JSONL files of documents never to keep (``exclude``, one or several)."""
        exclude = self.exclude
        return [Path(p) for p in (exclude if isinstance(exclude, list) else [exclude] if exclude else [])]

    def excluding(self, documents: Path) -> CrawlConfig:
        """This config with the JSONL file ``documents`` (e.g. a run's marked-bad documents) added to ``exclude``;
        the same config when it is listed already."""
        listed = self.exclude_files()
        if documents.resolve() in [p.resolve() for p in listed]:
            return self
        return self.model_copy(update={"exclude": [*listed, documents.resolve()]})


class CrawlStage(Stage):
    kind = "crawl"
    version = "5"  # what the result depends on besides the config: letters include their combining marks (filters,
    # identification, dedup); the seed model decides whatever the general model confuses with the seed languages
    # (confusions measured on the seed text), weighed by the general verdict; rare-language lines need evidence
    # (letters, margin, document support); fastText labels map to FLORES codes
    Config = CrawlConfig
    trains_on_data = True
    produces_corpus = True
    key_exclude = frozenset({"executor", "processes"})  # where shards run does not change the result

    def training_data(self, artifact: Artifact, upstream: list[Artifact]) -> list[Path]:
        return corpus_files(artifact)

    def files(self) -> list[Path]:
        found = {Path(p).resolve() for pattern in self.config.inputs for p in glob.glob(pattern, recursive=True)}
        return sorted(p for p in found if p.is_file())

    def input_fingerprints(self) -> dict[str, str]:
        seeds = {str(p): file_fingerprint(p) for p in sorted(Path(self.config.lid_seed).glob("*.txt"))}
        cfg = self.config
        extra = [p for p in (*cfg.exclude_files(), cfg.prefilter and cfg.prefilter.wordlist, cfg.general_lid_file())
                 if p]
        return {**{str(p): file_fingerprint(p) for p in [*self.files(), *extra]}, **seeds}

    def run(self, ctx: StageContext) -> dict[str, Any]:
        languages = self.config.languages or ctx.recipe.languages.all
        identifier = train_identifier(Path(self.config.lid_seed), None, general_lid=self.config.general_lid)
        identifier.save(ctx.out_dir / "lid")
        cfg = self.config
        near = None
        if cfg.near_dedup is not None:
            near = NearDeduplicator(cfg.near_dedup.threshold, cfg.near_dedup.num_perm, cfg.near_dedup.shingle,
                                    seed=ctx.seed)
        files = self.files()
        executor = ctx.options.get("executor") or cfg.executor
        wordlist, min_hit_rate = self._prefilter() or (frozenset(), 0.0)
        shard = CrawlSettings(tuple(languages), min_chars=cfg.min_chars, min_score=cfg.min_score, quality=cfg.quality,
                              extractor=cfg.extractor, extract_timeout=cfg.extract_timeout,
                              min_scores=dict(cfg.min_scores), wordlist=wordlist, min_hit_rate=min_hit_rate)
        job = CrawlJob(shard, near_dedup=near, exclude=tuple(self._excluded()), executor=executor,
                       processes=cfg.processes,  # None: the CPU count, at most one per shard
                       shard_dir=ctx.out_dir / "checkpoints" / "shards", max_shard_bytes=cfg.max_shard_mb * 2**20,
                       seed=ctx.seed, progress=ctx.progress, parquet=cfg.parquet, target=ctx.recipe.languages.target)
        stats = run_crawl(files, job, identifier, ctx.out_dir / "corpus")
        for warning in stats.get("warnings", []):
            ctx.log("corpus_warning", message=warning)
        shutil.rmtree(ctx.out_dir / "checkpoints", ignore_errors=True)
        written = ctx.out_dir / "corpus"
        corpus = {code: f"corpus/{code}.jsonl" for code in languages if (written / f"{code}.jsonl").exists()}
        parquet = {code: f"corpus/{code}.parquet" for code in corpus if cfg.parquet}
        ctx.log("corpus_written", languages={c: stats.get("languages", {}).get(c, {}) for c in corpus})
        ctx.write_json("scores.json", corpus_records(ctx.step_id, stats))
        outputs = {"corpus": corpus, "stats": "corpus/stats.json", "card": "corpus/card.md"}
        return {"models": [], "outputs": {**outputs, **({"parquet": parquet} if parquet else {})},
                "scores": "scores.json", "stats": stats}

    def _prefilter(self) -> tuple[frozenset[str], float] | None:
        cfg = self.config.prefilter
        return (read_wordlist(cfg.wordlist, cfg.top), cfg.min_hit_rate) if cfg is not None else None

    def _excluded(self) -> list[str]:
        return [r["text"] for path in self.config.exclude_files() for r in read_jsonl(path)
                if isinstance(r.get("text"), str)]


def corpus_records(stage: str, stats: dict[str, Any]) -> list[dict[str, Any]]:
    """Scoreboard records of kind ``corpus``: documents, words and bytes kept per language."""
    return [{"stage": stage, "variant": None, "kind": "corpus", "language": code, "metric": metric,
             "value": float(sizes[key]), "n": int(sizes["docs"])}
            for code, sizes in stats["languages"].items()
            for metric, key in (("documents", "docs"), ("words", "words"), ("bytes", "bytes"))]
