"""Will it fit? Peak training memory estimated from a model's config alone.

The model is built on the meta device (no weights), its modules are counted, and the peak of one
training step is the sum of what is resident at the end of a forward pass, with two overlaps: the backward
pass frees the activations as it fills the gradients, so with one micro-batch per optimizer step the peak
counts the larger of the two, not both; with gradient accumulation the gradients of the earlier
micro-batches stay resident during the next forward pass, so both count. The terms:

- weights: in their dtype, or NF4 for the linear layers of a 4-bit base (0.5 byte + block scales);
  whole-model training keeps float32 weights;
- ``upcast``: QLoRA's float32 copy of every weight that is not 4-bit (peft's ``prepare_model_for_kbit_training``
  upcasts the embeddings, norms and an untied output layer from the compute dtype);
- trainable parameters' gradients and AdamW's two moments (fp32 for adapters, as peft keeps them);
- ``ema``: an exponential moving average keeps an fp32 copy of every trained tensor;
- ``weight_cache``: under bf16 autocast (whole-model training), the bf16 copy of every decoder linear weight
  that the matmuls save for the backward pass;
- activations saved for the backward pass, per decoder layer and token: each norm's input and output
  (and its normalized value when the norm's weight trains); the rotated q and k, v (repeated to every
  head when a padding mask stops SDPA's native GQA), the attention output and its contiguous copy; the
  MLP's four intermediate tensors; each adapted layer's low-rank output, its dropout output and mask,
  and for DoRA the base and low-rank outputs. Autograd keeps nothing else: frozen linear layers save no
  input and rotary saves only cos/sin. Under autocast the residual stream and the norms stay float32 and
  each linear layer that reads a norm's output saves its own bf16 copy of it; the rest is bf16. A 4-bit
  base returns float32 from its linear layers (its norms are float32 after the upcast), so its activations
  are float32 whatever the compute dtype. With gradient checkpointing only each layer's input is kept,
  plus one layer recomputed at a time; attention scores (batch x heads x length²) only where the
  attention kernel materialises them;
- logits: one chunk at a time for this package's fused loss, or the whole batch (x3: logits, their
  float copy and their gradient) for a plain ``model(..., labels=...)`` loss.

Their sum is the allocator's peak (what ``torch.cuda.max_memory_allocated`` reports). The device total adds
the CUDA context (kernels, cuBLAS workspace), which the allocator does not see but the GPU must hold.

It mirrors what :mod:`workbench.train` does, so its figures are for this package's training loop.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch

from ..errors import ModelSourceError
from ..models import resolve_model
from .loss import chunk_rows

GIB = 1024**3
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
NF4_BYTES = 0.5 + 0.0127  # 4 bits + double-quantized absmax per 64-value block
CUDA_CONTEXT = int(0.6 * GIB)  # CUDA context and library workspaces, outside the allocator's count
FLOAT32 = 4


@dataclass(frozen=True)
class TrainSetup:
    """What one training run does, as far as memory is concerned."""

    method: str = "lora"  # full | embeddings | lora | rslora | dora
    r: int = 16
    targets: list[str] | str = "all-linear"
    quantize: str = "none"  # none | 4bit
    dtype: str = "bfloat16"  # adapters' base weights and compute dtype; full training keeps float32 weights
    batch_size: int = 8
    seq_len: int = 512
    gradient_checkpointing: bool = False
    embeddings: str = "frozen"  # frozen | new-rows | full
    new_rows: int = 0
    fused_loss: bool = True
    attention_scores: bool = False  # True where attention materialises its scores (CPU math kernel, eager)
    padded: bool = False  # batches carry an attention mask (padding), as finetuning's do; packed cpt has none
    dropout: float = 0.0  # adapter dropout
    device: str = "cuda"
    grad_accum: int = 1  # micro-batches per optimizer step
    ema: bool = False  # an EMA of the trained weights (cpt's ``ema``)
    autocast: bool = False  # float32 weights trained under bf16 autocast (full/embeddings training, bf16 hardware)

    @property
    def adapter(self) -> bool:
        return self.method in ("lora", "rslora", "dora")


@dataclass
class ModelShape:
    """What the estimator needs to know about a model, counted on the meta device."""

    params: int
    linear: list[tuple[str, int, int]]  # decoder linear layers: (name, in, out)
    embedding: int  # input embedding parameters
    head: int  # untied output layer parameters (0 when tied)
    vocab: int
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    norms_per_layer: int
    tied: bool


PART_LABELS = {
    "weights": "weights", "upcast": "fp32 upcast", "adapter": "adapter", "gradients": "grads",
    "optimizer": "optimizer", "ema": "ema", "weight_cache": "bf16 cache", "activations": "activations",
    "logits": "logits",
}
"""Every term of the estimate, in the order the plan's table shows them (short column names)."""


@dataclass
class MemoryEstimate:
    """Bytes per component; the allocator peak is their sum less ``overlap`` (bytes of two components that
    are never resident together); the device total adds ``context`` (the CUDA context, 0 off CUDA)."""

    parts: dict[str, float] = field(default_factory=dict)
    trainable: int = 0
    overlap: float = 0.0
    context: float = 0.0

    @property
    def allocator(self) -> float:
        """The allocator's peak: what ``torch.cuda.max_memory_allocated`` reports (on CPU, the live peak)."""
        return sum(self.parts.values()) - self.overlap

    @property
    def total(self) -> float:
        """The device total: the allocator peak and the CUDA context."""
        return self.allocator + self.context

    def fits(self, limit_gib: float) -> bool:
        return self.total <= limit_gib * GIB

    def gib(self) -> dict[str, float]:
        return {k: round(v / GIB, 3) for k, v in self.parts.items()} | {
            "overlap": round(self.overlap / GIB, 3), "allocator": round(self.allocator / GIB, 3),
            "context": round(self.context / GIB, 3), "total": round(self.total / GIB, 3)}


def model_shape(config: Any) -> ModelShape:
    """Count a model's modules from its config without allocating weights."""
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    text = getattr(config, "text_config", None) or config
    inp, out = model.get_input_embeddings(), model.get_output_embeddings()
    tied = out is None or out.weight is inp.weight
    head = out
    linear = [(name, m.in_features, m.out_features) for name, m in model.named_modules()
              if isinstance(m, torch.nn.Linear) and m is not head]
    layers = int(text.num_hidden_layers)
    norms = sum(1 for name, m in model.named_modules() if "norm" in type(m).__name__.lower() and ".layers.0." in
                f".{name}." and name.count(".") >= 3)
    heads = int(text.num_attention_heads)
    hidden = int(text.hidden_size)
    return ModelShape(
        params=sum(p.numel() for p in model.parameters()), linear=linear, embedding=inp.weight.numel(),
        head=0 if tied else out.weight.numel(), vocab=int(inp.weight.shape[0]), hidden=hidden,
        intermediate=int(getattr(text, "intermediate_size", 4 * hidden)), layers=layers, heads=heads,
        kv_heads=int(getattr(text, "num_key_value_heads", None) or heads),
        head_dim=int(getattr(text, "head_dim", None) or hidden // heads), norms_per_layer=max(norms, 2), tied=tied)


def _targeted(shape: ModelShape, targets: list[str] | str) -> list[tuple[str, int, int]]:
    if targets == "all-linear":
        return shape.linear
    return [entry for entry in shape.linear if entry[0].rsplit(".", 1)[-1] in set(targets)]


def estimate(shape: ModelShape, setup: TrainSetup) -> MemoryEstimate:
    """Peak memory of one training step of ``setup`` on a model of ``shape``."""
    compute = DTYPE_BYTES[setup.dtype] if setup.adapter else FLOAT32  # whole models train float32 weights
    targets = _targeted(shape, setup.targets) if setup.adapter else []
    linear_params = sum(i * o for _, i, o in shape.linear)
    parts: dict[str, float] = {}
    if setup.quantize == "4bit":
        parts["weights"] = linear_params * NF4_BYTES + (shape.params - linear_params) * compute
        parts["upcast"] = (shape.params - linear_params) * (FLOAT32 - compute)  # prepare_model_for_kbit_training
    else:
        parts["weights"] = shape.params * compute
    adapter_params = sum(setup.r * (i + o) + (o if setup.method == "dora" else 0) for _, i, o in targets)
    trainable, trained_tensors, embedding_copy = _trainable(shape, setup, adapter_params, compute)
    parts["adapter"] = adapter_params * FLOAT32 + embedding_copy
    parts["gradients"] = trained_tensors * FLOAT32  # fp32: adapters (peft keeps them so) and whole models alike
    parts["optimizer"] = trained_tensors * 2 * FLOAT32  # AdamW: two fp32 moments
    if setup.ema:
        parts["ema"] = trained_tensors * FLOAT32  # the EMA's fp32 shadow of every trained tensor
    if setup.autocast and not setup.adapter:
        parts["weight_cache"] = linear_params * 2  # bf16 copies the matmuls save for the backward pass
    activation_bytes = FLOAT32 if setup.quantize == "4bit" else compute  # a 4-bit base computes in float32 between
    parts["activations"] = _activations(shape, setup, targets, activation_bytes)
    parts["logits"] = _logits(shape, setup, activation_bytes, head_trainable=setup.method in ("full", "embeddings") or (
        setup.embeddings == "full"))
    # one micro-batch per step: the backward pass frees activations as it fills gradients, so the peak holds the
    # larger of the two; with accumulation the earlier micro-batches' gradients are resident during the next forward
    overlap = min(parts["activations"], parts["gradients"]) if setup.grad_accum <= 1 else 0.0
    context = CUDA_CONTEXT if setup.device.startswith("cuda") else 0
    return MemoryEstimate(parts, trainable, overlap=overlap, context=context)


def _trainable(shape: ModelShape, setup: TrainSetup, adapter_params: int, compute: int) -> tuple[int, int, float]:
    """(trainable parameters, elements of the tensors that get gradients and optimizer state, bytes of the
    trainable embedding copies peft keeps beside the frozen ones)."""
    embeddings = shape.embedding + shape.head
    if setup.method == "full":
        return shape.params, shape.params, 0.0
    if setup.method == "embeddings":  # new rows train through a gradient mask on the whole matrices
        rows = setup.new_rows * shape.hidden * (1 if shape.tied else 2)
        return (rows if setup.embeddings == "new-rows" else embeddings), embeddings, 0.0
    if setup.embeddings == "new-rows":
        rows = setup.new_rows * shape.hidden * (1 if shape.tied else 2)
        return adapter_params + rows, adapter_params + rows, rows * FLOAT32  # the delta beside the original rows
    if setup.embeddings == "full":  # modules_to_save: a trainable copy
        return adapter_params + embeddings, adapter_params + embeddings, embeddings * compute
    return adapter_params, adapter_params, 0.0


def _activations(shape: ModelShape, setup: TrainSetup, targets: list[tuple[str, int, int]], e: int) -> float:
    tokens = setup.batch_size * setup.seq_len
    mixed = setup.autocast and not setup.adapter
    layer = tokens * _saved_bytes_per_token(shape, setup, targets, e)
    if setup.attention_scores:
        scores = 2 if mixed else e
        layer += setup.batch_size * shape.heads * setup.seq_len**2 * (scores + 1)  # scores (+ a boolean mask)
    stream = e  # the residual stream: float32 under autocast (embedding output and residual adds stay float32)
    edges = 3 * tokens * shape.hidden * stream  # embedding output, final norm, hidden states gathered for the loss
    if setup.gradient_checkpointing:  # each layer's input, and one layer recomputed at a time
        return shape.layers * tokens * shape.hidden * stream + layer + edges
    return shape.layers * layer + edges


def _saved_bytes_per_token(shape: ModelShape, setup: TrainSetup, targets: list[tuple[str, int, int]],
                           e: int) -> float:
    """Bytes one decoder layer keeps for the backward pass, per token (autograd saves a tensor only for
    inputs that need a gradient: frozen linear layers keep no input, rotary keeps only cos/sin)."""
    h, f, d = shape.hidden, shape.intermediate, shape.head_dim
    q, kv = shape.heads * d, shape.kv_heads * d
    if setup.padded and shape.kv_heads != shape.heads:
        kv = q  # with an attention mask, SDPA gets k and v repeated to every head
    attention = q + 2 * kv + 2 * q  # rotated q and k, v; the output and its contiguous copy (o_proj's input)
    mlp = 4 * f  # gate, act(gate), up, act(gate) * up
    if setup.autocast and not setup.adapter:
        # float32 norms (input, normalized value); each linear layer reading a norm's output (all but the attention
        # and MLP output projections) saves its own bf16 cast of it; the matmul outputs are bf16
        per_layer_linear = len(shape.linear) // max(shape.layers, 1)
        reads_norm = max(per_layer_linear - 2, 0)
        return shape.norms_per_layer * 2 * h * FLOAT32 + reads_norm * h * 2 + (attention + mlp) * 2
    norm = 3 * h if setup.method == "full" else 2 * h  # input and output (and the normalized value, for weights)
    per_layer = [t for t in targets if ".layers.0." in f".{t[0]}."] or targets[: len(targets) // max(shape.layers, 1)]
    adapter = 0.0
    for _, i, o in per_layer:
        adapter += setup.r  # the low-rank output, kept for B
        if setup.dropout > 0:
            adapter += i * 1.25  # dropout output and its mask (1 byte of 4)
        if setup.method == "dora":
            adapter += 2 * o  # the base and low-rank outputs, both scaled by the trainable magnitude
    return (shape.norms_per_layer * norm + attention + mlp + adapter) * e


def _logits(shape: ModelShape, setup: TrainSetup, e: int, *, head_trainable: bool) -> float:
    tokens = setup.batch_size * setup.seq_len
    if not setup.fused_loss:
        return tokens * shape.vocab * (e + 4 + 4)  # logits, float copy for the loss, gradient

    rows = min(tokens, chunk_rows(shape.vocab))
    weight_grad = shape.vocab * shape.hidden * FLOAT32 if head_trainable else 0  # fp32 accumulator of the fused loss
    chunk = rows * shape.vocab * FLOAT32 * 2  # one chunk's logits and their gradient
    if setup.autocast and not setup.adapter:  # vocabulary blocks: a bf16 copy of the output matrix and the hidden
        # states, and the hidden states' gradient accumulated in float32
        return chunk + weight_grad + shape.vocab * shape.hidden * 2 + tokens * shape.hidden * (2 + FLOAT32)
    return chunk + weight_grad + tokens * shape.hidden * e  # chunk + grad of the hidden


SHIPPED_CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def load_config(source: str) -> tuple[Any, str]:
    """A model's config without its weights, and where it came from: a local directory, a registry
    model, the local Hugging Face cache, a config shipped with the package (common bases, so that
    planning works offline) or, online, the hub's ``config.json`` alone."""
    from transformers import AutoConfig

    if not source.startswith("hf:"):
        resolved = resolve_model(source)
        return AutoConfig.from_pretrained(resolved.path), str(resolved.path)
    repo = source[3:].partition("@")[0].strip()
    try:
        return AutoConfig.from_pretrained(repo, local_files_only=True), "local Hugging Face cache"
    except (OSError, ValueError):
        pass
    shipped = SHIPPED_CONFIGS / f"{repo.replace('/', '__')}.json"
    if shipped.is_file():
        values = json.loads(shipped.read_text(encoding="utf-8"))
        values.pop("_comment", None)
        return AutoConfig.for_model(values.pop("model_type"), **values), f"shipped config {shipped.name}"
    try:
        return AutoConfig.from_pretrained(repo), "Hugging Face hub (config.json only)"
    except (OSError, ValueError) as exc:
        names = ", ".join(sorted(p.stem.replace("__", "/") for p in SHIPPED_CONFIGS.glob("*.json")))
        raise ModelSourceError(
            f"no config for '{source}': not in the local Hugging Face cache, not shipped ({names}), and the hub "
            f"cannot be reached ({type(exc).__name__}); put its config.json in a folder and plan with that "
            "folder as the model") from exc


@runtime_checkable
class DescribesTraining(Protocol):
    """A stage config that trains: it says what each of its training runs trains (``None`` or a variant name)."""

    def training_setups(self, *, dtype: str, new_rows: int) -> list[tuple[str | None, TrainSetup]]: ...


@runtime_checkable
class AddsEmbeddingRows(Protocol):
    """A stage config that adds embedding rows (a tokenizer extension) for the stages after it to train."""

    def planned_new_rows(self) -> int: ...


def recipe_setups(recipe: Any) -> list[tuple[str, TrainSetup]]:
    """Every training run a recipe would do, as its stages describe them (:class:`DescribesTraining`), named
    ``<stage id>`` or ``<stage id>/<variant>``; rows a stage adds (:class:`AddsEmbeddingRows`) count for the
    stages after it."""
    dtype = "bfloat16" if recipe.base.dtype == "auto" else recipe.base.dtype
    new_rows = 0
    out = []
    for spec in recipe.stages:
        cfg = spec.config
        if isinstance(cfg, AddsEmbeddingRows):
            new_rows = cfg.planned_new_rows() or new_rows
        if isinstance(cfg, DescribesTraining):
            out += [(spec.id if variant is None else f"{spec.id}/{variant}", setup)
                    for variant, setup in cfg.training_setups(dtype=dtype, new_rows=new_rows)]
    return out


def trains_under_autocast(method: str, dtype: str) -> bool:
    """Whether the stages train this method's float32 weights under bf16 autocast on a GPU (see
    :func:`workbench.train.loop.mixed_precision`: a bfloat16 recipe dtype, whole-model or embedding training)."""
    return method in ("full", "embeddings") and dtype == "bfloat16"
