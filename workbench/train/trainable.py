"""What a training stage trains: the whole model, a peft adapter (LoRA, rsLoRA, DoRA; on a 4-bit
base for QLoRA), and the embeddings as frozen, their new rows only, or in full, with their own
learning rate.

New rows only: with an adapter, peft's ``trainable_token_indices`` (a delta on just those rows,
which peft keeps tied to a tied output layer); with full training, a gradient mask on
the embedding matrix (and on an untied output matrix) with no weight decay on the rows it freezes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..models import load_model, pick_dtype
from ..schema import ADAPTER_METHODS, AdapterConfig

METHODS = ("full", "embeddings", *ADAPTER_METHODS)  # "embeddings": the transformer stays frozen
EMBEDDING_MODES = ("frozen", "new-rows", "full")


def AdapterSettings(method: str = "lora", **adapter: Any) -> AdapterConfig:
    """:class:`AdapterConfig` under its former name, for callers that still pass ``method``: the method is
    :func:`prepare`'s own argument and is not part of the adapter's settings."""
    return AdapterConfig(**adapter)


@dataclass
class Trainable:
    """A model prepared for training and the optimizer groups of what trains."""

    model: Any
    param_groups: list[dict[str, Any]]
    trainable: int
    total: int
    is_peft: bool
    embedding_params: int = 0
    notes: list[str] = field(default_factory=list)


def load_base(path: Path, *, device: str, quantize: str = "none", dtype: str = "float32",
              gradient_checkpointing: bool = False) -> tuple[Any, Any]:
    """The model to train from ``path``: float weights in ``dtype``, or 4-bit NF4 weights (bitsandbytes) for
    QLoRA, whose matmuls then run in ``dtype`` (``auto``: bfloat16 where the hardware has it)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if quantize == "none":
        model, tokenizer = load_model(path, device=device, dtype=dtype)
    elif quantize == "4bit":
        from peft import prepare_model_for_kbit_training
        from transformers import BitsAndBytesConfig

        compute = pick_dtype(device, dtype)  # the 4-bit layers' matmul dtype (auto: bf16 where native)
        quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                   bnb_4bit_compute_dtype=compute)
        model = AutoModelForCausalLM.from_pretrained(path, quantization_config=quant, dtype=compute,
                                                     device_map={"": device})
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing,
                                                gradient_checkpointing_kwargs={"use_reentrant": False})
    else:
        raise ValueError(f"quantize must be 'none' or '4bit', got {quantize!r}")
    if gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.config.use_cache = False
    return model, tokenizer


def prepare(model: Any, *, method: str, adapter: AdapterConfig | None = None, embeddings: str = "full",
            new_ids: list[int] | None = None, lr: float, embedding_lr: float | None = None,
            weight_decay: float = 0.0) -> Trainable:
    """Mark what trains (``method`` x ``embeddings``; ``adapter``: the settings of a LoRA-family method, default
    :class:`AdapterConfig`'s) and build the optimizer's parameter groups."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if embeddings not in EMBEDDING_MODES:
        raise ValueError(f"embeddings must be one of {', '.join(EMBEDDING_MODES)}, got {embeddings!r}")
    new_ids = sorted(set(new_ids or []))
    if embeddings == "new-rows" and not new_ids:
        raise ValueError("embeddings: new-rows needs the rows a tokenizer stage added, and there are none "
                         "(use embeddings: full or frozen, or add a tokenizer stage in extend/replace mode)")
    if method == "embeddings" and embeddings == "frozen":
        raise ValueError("train: embeddings with embeddings: frozen leaves nothing to train")
    if method in ADAPTER_METHODS:
        model, embedding_params = _peft(model, adapter or AdapterConfig(), method, embeddings, new_ids)
    else:
        embedding_params = _dense(model, method, embeddings, new_ids)
    groups = _groups(model, embedding_params, lr, embedding_lr, weight_decay, frozen_rows=embeddings == "new-rows")
    trainable = sum(p.numel() for g in groups for p in g["params"])
    if embeddings == "new-rows" and method not in ADAPTER_METHODS:
        trainable = trainable - sum(p.numel() for p in embedding_params) + _rows_trainable(model, len(new_ids))
    total = sum(p.numel() for p in model.parameters())
    return Trainable(model, groups, trainable, total, method in ADAPTER_METHODS,
                     sum(p.numel() for p in embedding_params))


def _embedding_weights(model: Any) -> list[torch.nn.Parameter]:
    weights = [model.get_input_embeddings().weight]
    out = model.get_output_embeddings()
    if out is not None and out.weight is not weights[0]:
        weights.append(out.weight)
    return weights


def _rows_trainable(model: Any, rows: int) -> int:
    return sum(rows * w.shape[1] for w in _embedding_weights(model))


def _dense(model: Any, method: str, embeddings: str, new_ids: list[int]) -> list[torch.nn.Parameter]:
    for param in model.parameters():
        param.requires_grad = method == "full"
    weights = _embedding_weights(model)
    for weight in weights:
        weight.requires_grad = embeddings != "frozen"
        if embeddings == "new-rows":
            mask = torch.zeros(weight.shape[0], 1, dtype=weight.dtype, device=weight.device)
            mask[torch.tensor(new_ids, device=weight.device)] = 1
            weight.register_hook(lambda grad, mask=mask: grad * mask)
    return weights if embeddings != "frozen" else []


def _module_name(model: Any, module: torch.nn.Module) -> str:
    return next(name for name, m in model.named_modules() if m is module).rsplit(".", 1)[-1]


def _peft(model: Any, adapter: AdapterConfig, method: str, embeddings: str,
          new_ids: list[int]) -> tuple[Any, list[torch.nn.Parameter]]:
    from peft import LoraConfig, get_peft_model

    embed = _module_name(model, model.get_input_embeddings())
    out = model.get_output_embeddings()
    tied = out is not None and out.weight is model.get_input_embeddings().weight
    head = _module_name(model, out) if out is not None else None
    options: dict[str, Any] = {}
    if embeddings == "new-rows":
        indices = {embed: new_ids}
        if head is not None and not tied:
            indices[head] = new_ids
        options["trainable_token_indices"] = indices
    elif embeddings == "full":
        options["modules_to_save"] = [embed] + ([head] if head is not None and not tied else [])
    if tied and embeddings == "full":  # trainable tokens follow a tied output layer by themselves
        options["ensure_weight_tying"] = True
    targets = adapter.targets
    if head is not None and isinstance(targets, list) and head in targets and embeddings != "frozen":
        raise ValueError(f"adapter targets include the output layer '{head}' while embeddings are trained")
    config = LoraConfig(**adapter.lora_options(method), task_type="CAUSAL_LM", **options)
    model = get_peft_model(model, config)
    embedding_params = [p for n, p in model.named_parameters() if p.requires_grad and (
        "trainable_tokens_delta" in n or ".modules_to_save." in n)]
    return model, embedding_params


def _groups(model: Any, embedding_params: list[torch.nn.Parameter], lr: float, embedding_lr: float | None,
            weight_decay: float, *, frozen_rows: bool) -> list[dict[str, Any]]:
    embedding_ids = {id(p) for p in embedding_params}
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in embedding_ids]
    groups = []
    if rest:
        groups.append({"params": rest, "lr": lr, "weight_decay": weight_decay, "name": "model"})
    if embedding_params:
        groups.append({"params": embedding_params, "lr": embedding_lr or lr, "name": "embeddings",
                       "weight_decay": 0.0 if frozen_rows else weight_decay})
    if not groups:
        raise ValueError("nothing to train: every parameter is frozen")
    return groups


def save_standalone(trained: Trainable, base_path: Path, out: Path, *, work: Path, device: str,
                    dtype: str = "float32", state_dict: dict[str, torch.Tensor] | None = None) -> None:
    """Write ``out`` as a plain model directory (``AutoModelForCausalLM``-loadable): a full model as is,
    an adapter merged into a float copy of its base (so a 4-bit base merges without quantization loss).
    ``state_dict``: the model's full state dict when its own weights are sharded (FSDP)."""
    saved = {"state_dict": state_dict} if state_dict is not None else {}
    if not trained.is_peft:
        model = trained.model
        was = model.config.use_cache
        model.config.use_cache = True
        model.save_pretrained(out, **saved)
        model.config.use_cache = was
        return
    from peft import PeftModel

    adapter_dir = work / f"{out.name}-adapter"
    trained.model.save_pretrained(adapter_dir, **saved)
    base, _ = load_model(base_path, device=device, dtype=dtype)
    merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    merged.config.use_cache = True
    merged.save_pretrained(out)
