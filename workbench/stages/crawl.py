"""crawl: WARC/WET archives and text files -> deduplicated, language-identified corpora."""

from __future__ import annotations

import glob
from pathlib import Path
from typing import Any

from pydantic import Field

from ..io import file_fingerprint
from ..recipe import ExistingPath, InputGlob, LanguageCode, StrictModel
from .base import Artifact, Stage, StageContext


class CrawlConfig(StrictModel):
    inputs: list[InputGlob] = Field(min_length=1, description="files or globs: .warc(.gz), .wet(.gz), .txt, .jsonl")
    lid_seed: ExistingPath = Field(description="folder of <code>.txt seed texts for the language identifier")
    languages: list[LanguageCode] | None = Field(None, description="languages to keep (default: target + replay)")
    min_chars: int = Field(20, ge=1)
    min_score: float = Field(0.5, ge=0.0, le=1.0)


class CrawlStage(Stage):
    kind = "crawl"
    version = "1"
    Config = CrawlConfig
    trains_on_data = True

    def training_data(self, artifact: Artifact, upstream: list[Artifact]) -> list[Path]:
        return corpus_files(artifact)

    def files(self) -> list[Path]:
        found = {Path(p).resolve() for pattern in self.config.inputs for p in glob.glob(pattern, recursive=True)}
        return sorted(p for p in found if p.is_file())

    def input_fingerprints(self) -> dict[str, str]:
        seeds = {str(p): file_fingerprint(p) for p in sorted(Path(self.config.lid_seed).glob("*.txt"))}
        return {**{str(p): file_fingerprint(p) for p in self.files()}, **seeds}

    def run(self, ctx: StageContext) -> dict[str, Any]:
        from ..crawl.langid import train_identifier
        from ..crawl.pipeline import run_crawl

        languages = self.config.languages or ctx.recipe.languages.all
        identifier = train_identifier(Path(self.config.lid_seed), None)
        if hasattr(identifier, "save"):
            identifier.save(ctx.out_dir / "lid")
        stats = run_crawl(self.files(), languages, identifier, ctx.out_dir / "corpus",
                          min_chars=self.config.min_chars, min_score=self.config.min_score,
                          progress=ctx.progress)
        written = ctx.out_dir / "corpus"
        corpus = {code: f"corpus/{code}.jsonl" for code in languages if (written / f"{code}.jsonl").exists()}
        ctx.log("corpus_written", languages={c: stats.get("languages", {}).get(c, {}) for c in corpus})
        return {"models": [], "outputs": {"corpus": corpus, "stats": "corpus/stats.json"}, "stats": stats}


def corpus_files(artifact: Artifact, languages: list[str] | None = None) -> list[Path]:
    """The per-language corpus files of a crawl artifact (all languages, or those given)."""
    corpus = artifact.record.get("outputs", {}).get("corpus", {})
    return [artifact.path / rel for code, rel in corpus.items() if languages is None or code in languages]


def corpus_texts(artifact_path: Path, record: dict[str, Any], language: str) -> list[str]:
    """All texts of one language in a crawl artifact (empty if the crawl found none)."""
    from ..io import read_jsonl

    rel = record.get("outputs", {}).get("corpus", {}).get(language)
    return [r["text"] for r in read_jsonl(artifact_path / rel)] if rel else []
