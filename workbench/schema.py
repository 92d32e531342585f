"""What every configuration section shares: the strict base model and the validated field types (language codes,
directions, existing paths, input globs, evaluation sources) and the training settings. The recipe and every
stage's config are built from these; this module imports nothing of the workbench but the language codes, so
that any layer can use it.
"""

from __future__ import annotations

import glob
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo

from .languages import check_code, check_direction


def _language(value: str) -> str:
    return check_code(value)


def _direction(value: str) -> str:
    check_direction(value)
    return value


def recipe_folder(info: ValidationInfo) -> Path:
    return Path((info.context or {}).get("base_dir", "."))


def existing_path(value: Path, info: ValidationInfo) -> Path:
    path = value if value.is_absolute() else recipe_folder(info) / value
    if not path.exists():
        raise ValueError(f"path does not exist: {path} (relative paths are relative to the recipe's folder)")
    return path.resolve()


def _glob_pattern(value: str, info: ValidationInfo) -> str:
    pattern = value if Path(value).is_absolute() else str(recipe_folder(info) / value)
    if not glob.glob(pattern, recursive=True):
        raise ValueError(f"no file matches '{value}' (looked for {pattern})")
    return str(Path(pattern).resolve()) if not glob.has_magic(pattern) else pattern


def _eval_source(value: str, info: ValidationInfo) -> str:
    """``hf:<dataset>[@revision]`` as given, else an existing file or folder made absolute."""
    if value.startswith("hf:"):
        if not re.fullmatch(r"hf:[\w.-]+(/[\w.-]+)?(@[\w./-]+)?", value):
            raise ValueError(f"'{value}' is not a hub dataset id like hf:openlanguagedata/flores_plus[@revision]")
        return value
    return str(existing_path(Path(value), info))


LanguageCode = Annotated[str, AfterValidator(_language)]
Direction = Annotated[str, AfterValidator(_direction)]
ExistingPath = Annotated[Path, AfterValidator(existing_path)]
InputGlob = Annotated[str, AfterValidator(_glob_pattern)]
EvalSource = Annotated[str, BeforeValidator(lambda v: str(v) if isinstance(v, Path) else v),
                       AfterValidator(_eval_source)]


class StrictModel(BaseModel):
    """Base for every recipe section: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)



class TrainingConfig(StrictModel):
    """Optimisation settings shared by the training stages."""

    batch_size: int = Field(8, ge=1)
    grad_accum: int = Field(1, ge=1)
    lr: float = Field(1e-4, gt=0)
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    weight_decay: float = Field(0.0, ge=0)
