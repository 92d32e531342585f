"""Transplant an extended vocabulary into a model: resize embeddings, initialize the new rows."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch

from .vocab import Extension, base_model_tokenizer, decompose


def first_free_id(model: Any, spec: dict[str, Any]) -> int:
    """First id after every id in use (vocabulary, added tokens, padded embedding rows)."""
    ids = list(spec["model"]["vocab"].values()) + [t["id"] for t in spec.get("added_tokens", [])]
    return max(max(ids) + 1, model.get_input_embeddings().weight.shape[0])


@torch.no_grad()
def init_new_rows(model: Any, base_spec: dict[str, Any], extension: Extension,
                  method: str = "subtoken-mean") -> dict:
    """Resize input/output embeddings and set each new row.

    ``subtoken-mean``: the mean of the rows of the pieces the base tokenizer splits the new piece into
    (the same byte sequence, so partial-UTF-8 pieces never collapse onto one row); the output
    embedding of an untied head gets its own mean from the output matrix. ``mean``: the mean of all
    base rows.
    """
    old_rows = model.get_input_embeddings().weight.shape[0]
    new_rows = max([old_rows] + [i + 1 for i, _ in extension.added])
    model.resize_token_embeddings(new_rows, mean_resizing=False)
    matrices = [model.get_input_embeddings().weight]
    output = model.get_output_embeddings()
    tied = output is None or output.weight.data_ptr() == matrices[0].data_ptr()
    if not tied:
        matrices.append(output.weight)
    base = base_model_tokenizer(base_spec)
    parts_of = {i: [j for j in decompose(base, piece) if j < old_rows] for i, piece in extension.added}
    pieces_per_token = []
    for matrix in matrices:
        base_mean = matrix[:old_rows].float().mean(dim=0)
        for token_id in parts_of:
            parts = parts_of[token_id] if method == "subtoken-mean" else []
            row = matrix[parts].float().mean(dim=0) if parts else base_mean
            matrix[token_id] = row.to(matrix.dtype)
            if matrix is matrices[0]:
                pieces_per_token.append(len(parts))
    return {"old_rows": old_rows, "new_rows": new_rows, "tied": tied, "method": method,
            "mean_pieces_per_new_token": sum(pieces_per_token) / max(len(pieces_per_token), 1)}


def save_tokenizer(hf_tokenizer: Any, spec: dict[str, Any], out_dir: Path) -> None:
    """Save the tokenizer files of ``hf_tokenizer`` with ``spec`` as its ``tokenizer.json``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    hf_tokenizer.save_pretrained(out_dir)
    (out_dir / "tokenizer.json").write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")
    # slow-tokenizer files would not know the new pieces
    for stale in ("tokenizer.model", "vocab.json", "merges.txt"):
        path = out_dir / stale
        if path.is_file():
            path.unlink()
        elif path.is_dir():
            shutil.rmtree(path)
