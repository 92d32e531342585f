"""Recipes: YAML files validated by pydantic into a :class:`Recipe`.

Every error is reported as one :class:`RecipeError` whose message names the file, the field path
(``stages[2].cpt.lr``) and what is allowed. Relative paths in a recipe are relative to the recipe
file's directory.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from .errors import RecipeError
from .schema import (
    Direction,
    EvalSource,
    ExistingPath,
    LanguageCode,
    StrictModel,
    recipe_folder,
)
from .stages import STAGES

# -- recipe sections -----------------------------------------------------------------------------------


class BaseModelConfig(StrictModel):
    model: str = Field(description="hf:<repo>, a local directory, gguf:<file>, or gemma3-270m / smollm2-135m")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"

    @field_validator("model")
    @classmethod
    def _resolve_local(cls, value: str, info: ValidationInfo) -> str:
        if value.startswith("gguf:"):
            path = Path(value[5:])
            path = path if path.is_absolute() else recipe_folder(info) / path
            if not path.is_file():
                raise ValueError(f"GGUF file does not exist: {path}")
            return f"gguf:{path.resolve()}"
        looks_local = value.startswith((".", "/", "~")) or (Path(value).exists() and ":" not in value)
        if looks_local:
            path = Path(value).expanduser()
            path = path if path.is_absolute() else recipe_folder(info) / path
            if not (path / "config.json").is_file():
                raise ValueError(f"not a Hugging Face model directory (no config.json): {path}")
            return str(path.resolve())
        return value


class LanguagesConfig(StrictModel):
    target: LanguageCode
    replay: list[LanguageCode] = Field(default_factory=list)

    @property
    def all(self) -> list[str]:
        return [self.target, *[code for code in self.replay if code != self.target]]


EVAL_SOURCE_HELP = ("FLORES-layout folder (<code>.<split>), folder of line-aligned <code>.txt, .tsv with a header of "
                    "codes, .jsonl with a key per code, or hf:<dataset id>")


class FloorConfig(StrictModel):
    """The character n-gram floor, trained on each language's training corpus (the crawl output)."""

    order: int = Field(3, ge=1, le=8, description="characters of context + 1 (3: a character trigram)")
    max_chars: int = Field(20_000_000, ge=1, description="training characters per language (the first ones)")


class LMEvalConfig(StrictModel):
    """Bits per byte / per character per language, parallel-sentence surprisal, and the n-gram floor."""

    sets: EvalSource = Field(description=EVAL_SOURCE_HELP)
    split: str = "dev"
    languages: list[LanguageCode] = Field(min_length=1)
    max_sentences: int = Field(200, gt=0)
    batch_size: int = Field(16, gt=0)
    max_length: int | None = Field(None, ge=2, description="window in tokens (default: the model's positions)")
    stride: int | None = Field(None, ge=1, description="window step for long texts (default: max_length // 2)")
    surprisal: bool = Field(True, description="surprisal of each sentence's second half given its first half")
    floor: FloorConfig | None = Field(FloorConfig(), description="character n-gram baseline (null: none)")


class MTEvalConfig(StrictModel):
    """chrF++, BLEU and spBLEU per direction, and failure-detector rates."""

    sets: EvalSource = Field(description=EVAL_SOURCE_HELP)
    split: str = "dev"
    exemplar_split: str = Field("dev", description="few-shot exemplars come from this split, never from scored lines")
    directions: list[Direction] = Field(min_length=1)
    max_sentences: int = Field(100, gt=0)
    shots: int = Field(1, ge=0, description="few-shot exemplars, taken from sentences never scored")
    prompt: Literal["auto", "plain", "chat"] = Field(
        "auto", description="auto: the chat template if the tokenizer has one (instruct models), else plain")
    max_new_tokens: int | None = Field(
        None, gt=0, description="hard cap on generated tokens; each sentence's budget follows its length in "
        "characters and the tokenizer's tokens per target character (null: no cap but the model's positions)")
    batch_size: int = Field(8, gt=0)
    spbleu: bool = Field(True, description="spBLEU (flores200 SentencePiece) when its model file can be had")
    lid_seed: ExistingPath | None = Field(
        None, description="folder of <code>.txt seed texts: enables the off-target language detector")


class ContaminationConfig(StrictModel):
    """Word n-gram overlap between every training corpus of the run and the evaluation sentences."""

    n: int = Field(13, ge=1, description="n-gram length in words (shorter sentences count as one n-gram)")
    min_words: int = Field(4, ge=1, description="eval sentences with fewer words are not checked")
    exclude: bool = Field(False, description="score every model without the eval sentences found in training data")


class EvalConfig(StrictModel):
    lm: LMEvalConfig | None = None
    mt: MTEvalConfig | None = None
    contamination: ContaminationConfig | None = Field(ContaminationConfig(), description="null: no check")


class RecipeHeader(StrictModel):
    name: str
    description: str = ""
    seed: int = 0
    base: BaseModelConfig
    languages: LanguagesConfig
    eval: EvalConfig = EvalConfig()
    stages: list[dict[str, Any]] = Field(min_length=1)

    @field_validator("name")
    @classmethod
    def _slug(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", value):
            raise ValueError("must be 1-100 letters, digits, '.', '_' or '-' (it names the run directory)")
        return value


class StageSpec(BaseModel):
    """One entry of ``stages:`` after validation."""

    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)
    id: str
    kind: str
    config: Any


class Recipe(RecipeHeader):
    """A validated recipe; ``stages`` holds typed stage configs."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)
    stages: list[StageSpec]  # type: ignore[assignment]
    path: Path
    raw: dict[str, Any]


# -- loading ---------------------------------------------------------------------------------------------


def load_recipe(path: str | Path) -> Recipe:
    """Read and validate a recipe file; raise :class:`RecipeError` with one readable message."""
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"{path}: recipe file not found")
    return recipe_from_text(path.read_text(encoding="utf-8"), path)


def recipe_from_text(text: str, path: str | Path) -> Recipe:
    """Validate recipe YAML given as text, as if it were the file ``path`` (relative paths resolve from its
    folder; nothing is written). Raises :class:`RecipeError` naming every problem's field."""
    path = Path(path)
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise RecipeError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(raw, dict):
        raise RecipeError(f"{path}: a recipe is a YAML mapping with keys name, base, languages, eval, stages")
    return parse_recipe(raw, path)


def parse_recipe(raw: dict[str, Any], path: Path) -> Recipe:
    """Validate an already-parsed recipe mapping (``path`` is used for messages and relative paths)."""
    context = {"base_dir": path.parent.resolve()}
    problems: list[str] = []
    try:
        header = RecipeHeader.model_validate(raw, context=context)
    except ValidationError as err:
        raise RecipeError(_format(path, err)) from None
    stages: list[StageSpec] = []
    seen: dict[str, int] = {}
    for index, entry in enumerate(header.stages):
        where = f"stages[{index}]"
        if not isinstance(entry, dict) or len(entry) != 1:
            problems.append(f"{where}: each stage is a mapping with one key, the stage kind "
                            f"(allowed: {', '.join(STAGES)})")
            continue
        (kind, config), = entry.items()
        if kind not in STAGES:
            problems.append(f"{where}: unknown stage '{kind}'; allowed: {', '.join(STAGES)}")
            continue
        try:
            typed = STAGES[kind].Config.model_validate(config or {}, context=context)
        except ValidationError as err:
            problems.extend(_error_lines(err, prefix=f"{where}.{kind}", model=STAGES[kind].Config))
            continue
        seen[kind] = seen.get(kind, 0) + 1
        stage_id = kind if seen[kind] == 1 else f"{kind}-{seen[kind]}"
        stages.append(StageSpec(id=stage_id, kind=kind, config=typed))
    if problems:
        raise RecipeError(_header(path, len(problems)) + "\n".join(f"  {p}" for p in problems))
    fields = {k: getattr(header, k) for k in RecipeHeader.model_fields if k != "stages"}
    recipe = Recipe(**fields, stages=stages, path=path.resolve(), raw=raw)
    for spec in recipe.stages:
        _check_stage_order(recipe, spec, path)
    return recipe


def _check_stage_order(recipe: Recipe, spec: StageSpec, path: Path) -> None:
    index = recipe.stages.index(spec)
    order = list(STAGES)
    later = [(i, s.kind) for i, s in enumerate(recipe.stages[:index]) if order.index(s.kind) > order.index(spec.kind)]
    if later:
        raise RecipeError(
            f"{path}: stages[{index}].{spec.kind}: comes after stages[{later[0][0]}].{later[0][1]} "
            f"(order the stages: {' -> '.join(STAGES)})"
        )
    before = {s.kind for s in recipe.stages[:index]}
    missing = [need for need in STAGES[spec.kind].requires if need not in before]
    if missing:
        raise RecipeError(
            f"{path}: stages[{index}].{spec.kind}: needs a '{missing[0]}' stage before it "
            f"(order the stages: {' -> '.join(STAGES)})"
        )


def _header(path: Path, count: int) -> str:
    return f"{path}: invalid recipe ({count} problem{'s' if count > 1 else ''}):\n"


def _format(path: Path, err: ValidationError) -> str:
    lines = _error_lines(err, prefix="", model=RecipeHeader)
    return _header(path, len(lines)) + "\n".join(f"  {line}" for line in lines)


def _error_lines(err: ValidationError, prefix: str, model: type[BaseModel] | None = None) -> list[str]:
    lines = []
    for error in err.errors():
        message = _message(error)
        if error["type"] == "extra_forbidden" and model is not None:
            keys = _allowed_keys(model, error["loc"][:-1])
            message += f"; allowed: {', '.join(keys)}" if keys else ""
        lines.append(f"{_loc(prefix, error['loc'])}: {message}")
    return lines


def _allowed_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Field names of the (nested) model that ``loc`` points into."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        field = current.model_fields.get(part) if _is_model(current) else None
        if field is None:
            return []
        current = _inner_model(field.annotation)
    return list(current.model_fields) if _is_model(current) else []


def _is_model(obj: Any) -> bool:
    return isinstance(obj, type) and issubclass(obj, BaseModel)


def _inner_model(annotation: Any) -> Any:
    """The BaseModel class inside ``X | None``, ``list[X]``, ``dict[str, X]``."""
    if _is_model(annotation):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


def _loc(prefix: str, loc: tuple[Any, ...]) -> str:
    out = prefix
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def _message(error: dict[str, Any]) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required field is missing"
    message = error["msg"].removeprefix("Value error, ")
    if "input" in error and kind not in ("value_error",) and not isinstance(error["input"], (dict, list)):
        message += f" (got {error['input']!r})"
    return message


def eval_config_from_options(*, lm_sets: str | None, mt_sets: str | None, languages: list[str],
                             directions: list[str], split: str, max_sentences: int | None, shots: int,
                             prompt: str, lid_seed: str | None, names: Mapping[str, str] | None = None,
                             source: str = "evaluation settings") -> EvalConfig:
    """An :class:`EvalConfig` from plain evaluation settings (a command's options, a function's arguments).
    Problems raise one :class:`RecipeError` that starts with ``source`` and names each setting as ``names`` calls
    it (field path -> name, e.g. ``{"mt.sets": "--mt-sets"}`` for a command's flags), else by its field path."""
    names = names or {}

    def name(field: str) -> str:
        return names.get(field, field)

    if not lm_sets and not mt_sets:
        raise RecipeError(f"{source}: give {name('lm.sets')} (with {name('lm.languages')}) and/or "
                          f"{name('mt.sets')} (with {name('mt.directions')})")
    raw: dict[str, Any] = {"contamination": None}
    if lm_sets:
        raw["lm"] = {"sets": lm_sets, "languages": languages, "split": split, "floor": None,
                     **({"max_sentences": max_sentences} if max_sentences else {})}
    if mt_sets:
        raw["mt"] = {"sets": mt_sets, "directions": directions, "split": split, "shots": shots, "prompt": prompt,
                     "lid_seed": lid_seed, **({"max_sentences": max_sentences} if max_sentences else {})}
    try:
        return EvalConfig.model_validate(raw, context={"base_dir": Path.cwd()})
    except ValidationError as err:
        lines = []
        for line in _error_lines(err, prefix=""):
            where, _, message = line.partition(": ")
            field = re.sub(r"\[\d+\]$", "", where)
            lines.append(f"{names.get(field, where)}: {message}")
        raise RecipeError(f"{source}: " + "; ".join(lines)) from None
