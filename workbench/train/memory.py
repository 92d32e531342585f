"""Will it fit? Peak training memory estimated from a model's config alone.

The model is built on the meta device (no weights), its modules are counted, and the peak of one
training step is the sum of what is resident during the backward pass, which frees the activations as it
fills the gradients (so the peak counts the larger of the two, not both):

- weights: in their dtype, or NF4 for the linear layers of a 4-bit base (0.5 byte + block scales);
- trainable parameters' gradients and AdamW's two moments (fp32 for adapters, as peft keeps them);
- activations saved for the backward pass, per decoder layer and token: each norm's input and output
  (and its normalized value when the norm's weight trains); the rotated q and k, v (repeated to every
  head when a padding mask stops SDPA's native GQA), the attention output and its contiguous copy; the
  MLP's four intermediate tensors; each adapted layer's low-rank output, its dropout output and mask,
  and for DoRA the base and low-rank outputs. Autograd keeps nothing else: frozen linear layers save no
  input and rotary saves only cos/sin. With gradient checkpointing only each layer's input is kept,
  plus one layer recomputed at a time;
  attention scores (batch x heads x length²) only where the attention kernel materialises them;
- logits: one chunk at a time for this package's fused loss, or the whole batch (x3: logits, their
  float copy and their gradient) for a plain ``model(..., labels=...)`` loss;
- a fixed runtime overhead (CUDA context, allocator) on GPUs.

It mirrors what :mod:`workbench.train` does, so its figures are for this package's training loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

GIB = 1024**3
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
NF4_BYTES = 0.5 + 0.0127  # 4 bits + double-quantized absmax per 64-value block
CUDA_OVERHEAD = int(0.6 * GIB)


@dataclass(frozen=True)
class TrainSetup:
    """What one training run does, as far as memory is concerned."""

    method: str = "lora"  # full | embeddings | lora | rslora | dora
    r: int = 16
    targets: list[str] | str = "all-linear"
    quantize: str = "none"  # none | 4bit
    dtype: str = "bfloat16"  # weights (adapters' base) / compute dtype; full training keeps float32
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


@dataclass
class MemoryEstimate:
    """Bytes per component, and the peak: their sum less ``overlap`` (bytes of two components that are
    never resident together)."""

    parts: dict[str, float] = field(default_factory=dict)
    trainable: int = 0
    overlap: float = 0.0

    @property
    def total(self) -> float:
        return sum(self.parts.values()) - self.overlap

    def fits(self, limit_gib: float) -> bool:
        return self.total <= limit_gib * GIB

    def gib(self) -> dict[str, float]:
        return {k: round(v / GIB, 3) for k, v in self.parts.items()} | {"total": round(self.total / GIB, 3)}


def model_shape(config: Any) -> ModelShape:
    """Count a model's modules from its config without allocating weights."""
    import torch
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
    adapter = setup.method in ("lora", "rslora", "dora")
    compute = DTYPE_BYTES[setup.dtype] if adapter else 4  # this package trains whole models in fp32
    targets = _targeted(shape, setup.targets) if adapter else []
    parts: dict[str, float] = {}
    linear_params = sum(i * o for _, i, o in shape.linear)
    if setup.quantize == "4bit":
        parts["weights"] = linear_params * NF4_BYTES + (shape.params - linear_params) * compute
    else:
        parts["weights"] = shape.params * compute
    adapter_params = sum(setup.r * (i + o) + (o if setup.method == "dora" else 0) for _, i, o in targets)
    embedding_trainable, embedding_copy = 0, 0.0
    if setup.embeddings == "new-rows":
        embedding_trainable = setup.new_rows * shape.hidden * (1 if shape.tied else 2)
        embedding_copy = embedding_trainable * 4  # peft keeps the original rows beside the delta
    elif setup.embeddings == "full" and adapter:
        embedding_trainable = shape.embedding + shape.head
        embedding_copy = embedding_trainable * compute  # modules_to_save: a trainable copy
    if setup.method == "full":
        trainable = shape.params
    elif setup.method == "embeddings":
        trainable = shape.embedding + shape.head
    else:
        trainable = adapter_params + embedding_trainable
    parts["adapter"] = adapter_params * 4 + embedding_copy
    parts["gradients"] = trainable * 4  # fp32: adapters (peft keeps them so) and whole models alike
    parts["optimizer"] = trainable * 8  # AdamW: two fp32 moments
    parts["activations"] = _activations(shape, setup, targets, compute)
    parts["logits"] = _logits(shape, setup, compute, head_trainable=setup.method in ("full", "embeddings") or (
        setup.embeddings == "full"))
    if setup.device.startswith("cuda"):
        parts["overhead"] = CUDA_OVERHEAD
    # the backward pass frees activations as it fills gradients: the peak holds the larger of the two
    return MemoryEstimate(parts, trainable, overlap=min(parts["activations"], parts["gradients"]))


def _activations(shape: ModelShape, setup: TrainSetup, targets: list[tuple[str, int, int]], e: int) -> float:
    tokens = setup.batch_size * setup.seq_len
    layer = tokens * _saved_per_token(shape, setup, targets) * e
    if setup.attention_scores:
        layer += setup.batch_size * shape.heads * setup.seq_len**2 * (e + 1)  # scores (+ a boolean mask)
    edges = 3 * tokens * shape.hidden * e  # embedding output, final norm, hidden states gathered for the loss
    if setup.gradient_checkpointing:  # each layer's input, and one layer recomputed at a time
        return shape.layers * tokens * shape.hidden * e + layer + edges
    return shape.layers * layer + edges


def _saved_per_token(shape: ModelShape, setup: TrainSetup, targets: list[tuple[str, int, int]]) -> float:
    """Values one decoder layer keeps for the backward pass, per token (autograd saves a tensor only for
    inputs that need a gradient: frozen linear layers keep no input, rotary keeps only cos/sin)."""
    h, f, d = shape.hidden, shape.intermediate, shape.head_dim
    q, kv = shape.heads * d, shape.kv_heads * d
    if setup.padded and shape.kv_heads != shape.heads:
        kv = q  # with an attention mask, SDPA gets k and v repeated to every head
    norm = 3 * h if setup.method == "full" else 2 * h  # input and output (and the normalized value, for weights)
    attention = q + 2 * kv + 2 * q  # rotated q and k, v; the output and its contiguous copy (o_proj's input)
    mlp = 4 * f  # gate, act(gate), up, act(gate) * up
    per_layer = [t for t in targets if ".layers.0." in f".{t[0]}."] or targets[: len(targets) // max(shape.layers, 1)]
    adapter = 0.0
    for _, i, o in per_layer:
        adapter += setup.r  # the low-rank output, kept for B
        if setup.dropout > 0:
            adapter += i * 1.25  # dropout output and its mask (1 byte of 4)
        if setup.method == "dora":
            adapter += 2 * o  # the base and low-rank outputs, both scaled by the trainable magnitude
    return shape.norms_per_layer * norm + attention + mlp + adapter


def _logits(shape: ModelShape, setup: TrainSetup, e: int, *, head_trainable: bool) -> float:
    tokens = setup.batch_size * setup.seq_len
    if not setup.fused_loss:
        return tokens * shape.vocab * (e + 4 + 4)  # logits, float copy for the loss, gradient
    from .loss import chunk_rows

    rows = min(tokens, chunk_rows(shape.vocab))
    weight_grad = shape.vocab * shape.hidden * 4 if head_trainable else 0  # fp32 accumulator of the fused loss
    return rows * shape.vocab * 4 * 2 + weight_grad + tokens * shape.hidden * e  # chunk + grad of the hidden


SHIPPED_CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def load_config(source: str) -> tuple[Any, str]:
    """A model's config without its weights, and where it came from: a local directory, a registry
    model, the local Hugging Face cache, a config shipped with the package (common bases, so that
    planning works offline) or, online, the hub's ``config.json`` alone."""
    import json

    from transformers import AutoConfig

    from ..errors import ModelSourceError

    if not source.startswith("hf:"):
        from ..models import resolve_model

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


def recipe_setups(recipe: Any) -> list[tuple[str, TrainSetup]]:
    """Every training run a recipe would do (cpt; each finetune variant), as memory setups."""
    dtype = "bfloat16" if recipe.base.dtype == "auto" else recipe.base.dtype
    new_rows = 0
    out = []
    for spec in recipe.stages:
        cfg = spec.config
        if spec.kind == "tokenizer" and cfg.mode == "extend":
            new_rows = cfg.max_new_tokens or max(cfg.vocab_size // 2, 1)
        elif spec.kind == "cpt":
            embeddings = cfg.embeddings.train
            if embeddings == "auto":
                embeddings = "full" if cfg.train in ("full", "embeddings") else ("new-rows" if new_rows else "frozen")
            out.append((spec.id, TrainSetup(
                method=cfg.train, r=cfg.adapter.r, targets=cfg.adapter.targets, quantize=cfg.quantize, dtype=dtype,
                batch_size=cfg.batch_size, seq_len=cfg.block_size, gradient_checkpointing=cfg.gradient_checkpointing,
                embeddings=embeddings, new_rows=new_rows, dropout=cfg.adapter.dropout if cfg.train != "full" else 0.0)))
        elif spec.kind == "finetune":
            for name, variant in cfg.variants.items():
                out.append((f"{spec.id}/{name}", TrainSetup(
                    method=variant.method, r=variant.r, targets=variant.targets, quantize=variant.quantize,
                    dtype=dtype, batch_size=cfg.batch_size, seq_len=cfg.max_length,
                    gradient_checkpointing=cfg.gradient_checkpointing,
                    embeddings="full" if variant.method == "full" else "frozen", padded=True,
                    dropout=variant.dropout if variant.method != "full" else 0.0)))
    return out
