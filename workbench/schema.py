"""What every configuration section shares: the strict base model and the validated field types (language codes,
directions, existing paths, input globs, evaluation sources), the training settings and the one adapter config.
The recipe and every stage's config are built from these; this module imports nothing of the workbench but the
language codes, so that any layer can use it.
"""

from __future__ import annotations

import glob
import re
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

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


AdapterMethod = Literal["lora", "rslora", "dora"]
"""The peft LoRA family: plain LoRA, rank-stabilised LoRA (scaled by alpha/sqrt(r)), weight-decomposed DoRA."""
ADAPTER_METHODS: tuple[str, ...] = get_args(AdapterMethod)
Quantize = Annotated[Literal["none", "4bit"], Field(description="4bit: QLoRA (bitsandbytes NF4 base)")]


class AdapterConfig(StrictModel):
    """A LoRA-family adapter: one config for LoRA, rsLoRA and DoRA, as peft's ``LoraConfig`` is.

    Which of the three trains is chosen beside it (cpt's ``train``, a finetune variant's ``method``), because that
    same choice also offers training without an adapter. The defaults are continued pretraining's, which learns a
    language from many tokens of running text: rank 16, and no dropout (the data volume regularises, and dropout
    would hold an extra activation per adapted layer). A finetune variant lowers them (see
    :class:`workbench.stages.finetune.VariantConfig`).
    """

    r: int = Field(16, ge=1)
    alpha: float | None = Field(None, gt=0, description="lora_alpha (default: 2 x r; rsLoRA scales by alpha/sqrt(r))")
    dropout: float = Field(0.0, ge=0, lt=1)
    targets: list[str] | Literal["all-linear"] = "all-linear"

    def lora_options(self, method: str) -> dict[str, Any]:
        """peft ``LoraConfig`` arguments for this adapter trained as ``method`` (lora, rslora or dora)."""
        if method not in ADAPTER_METHODS:
            raise ValueError(f"an adapter method is one of {', '.join(ADAPTER_METHODS)}, got {method!r}")
        return {"r": self.r, "lora_alpha": self.alpha or 2 * self.r, "lora_dropout": self.dropout,
                "target_modules": self.targets, "use_rslora": method == "rslora", "use_dora": method == "dora"}


class TrainingConfig(StrictModel):
    """Optimisation settings shared by the training stages."""

    batch_size: int = Field(8, ge=1)
    grad_accum: int = Field(1, ge=1)
    lr: float = Field(1e-4, gt=0)
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    weight_decay: float = Field(0.0, ge=0)
