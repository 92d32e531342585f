"""Models on the Hugging Face hub: a cached snapshot (config + weights + tokenizer), a download when the hub can be
reached, and one readable message when it cannot.

``huggingface_hub`` is imported when first needed: it reads ``HF_HOME`` and ``HF_HUB_OFFLINE`` at import time,
so a process that sets them after importing the workbench still gets them.
"""

from __future__ import annotations

import os
from pathlib import Path

from huggingface_hub import constants, snapshot_download
from huggingface_hub.errors import (
    GatedRepoError,
    HFValidationError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from ..errors import ModelSourceError
from .directory import has_weights

_HF_BASE_PATTERNS = [
    "config.json", "generation_config.json", "tokenizer*", "special_tokens_map.json", "added_tokens.json",
    "vocab.json", "vocab.txt", "merges.txt", "*.tiktoken", "spiece.model", "sentencepiece*.model",
    "chat_template.jinja", "chat_template.json", "README.md", "LICENSE*",
]
_HF_WEIGHT_PATTERNS = (["*.safetensors", "*.safetensors.index.json"], ["*.bin", "*.bin.index.json"])
_HF_IGNORE = ["*/*", "consolidated*", "original*", "training_args.bin", "optimizer*", "scheduler*"]


def hub_offline() -> bool:
    """True when the hub must not be contacted (``HF_HUB_OFFLINE`` or ``TRANSFORMERS_OFFLINE``)."""
    env = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return bool(constants.HF_HUB_OFFLINE) or env.strip().upper() in {"1", "ON", "YES", "TRUE"}



def hf_snapshot(repo: str, revision: str | None, *, local_only: bool) -> Path | None:
    """A snapshot with config + weights, trying safetensors before .bin; None if not cached."""
    for weights in _HF_WEIGHT_PATTERNS:
        try:
            path = Path(snapshot_download(repo, revision=revision, local_files_only=local_only,
                                          allow_patterns=_HF_BASE_PATTERNS + weights,
                                          ignore_patterns=_HF_IGNORE))
        except HFValidationError as exc:
            raise ModelSourceError(f"'{repo}' is not a valid Hugging Face repo id ({exc}); "
                                   "expected hf:<org>/<name>[@revision]") from exc
        except (LocalEntryNotFoundError, OSError):
            if local_only:
                return None
            raise
        if (path / "config.json").is_file() and has_weights(path):
            return path
    return None


def hf_download(repo: str, revision: str | None) -> Path:
    """Download a snapshot of ``repo`` (see :func:`hf_snapshot`); each failure as one readable message."""
    try:
        path = hf_snapshot(repo, revision, local_only=False)
    except ModelSourceError:
        raise
    except GatedRepoError as exc:
        raise ModelSourceError(f"Hugging Face repo '{repo}' is gated: accept its licence on the hub and "
                               "log in (`hf auth login`) or set HF_TOKEN, then retry") from exc
    except RepositoryNotFoundError as exc:
        raise ModelSourceError(f"Hugging Face repo '{repo}' does not exist or is private (check the "
                               "spelling; for a private repo log in with `hf auth login`)") from exc
    except RevisionNotFoundError as exc:
        raise ModelSourceError(f"Hugging Face repo '{repo}' has no revision '{revision}'") from exc
    except Exception as exc:  # connection errors, offline mode, timeouts: one readable message
        reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".strip()
        raise hf_unavailable(repo, revision, reason) from exc
    if path is None:
        raise ModelSourceError(f"Hugging Face repo '{repo}' has no config.json with weights at its top level")
    return path


def hf_unavailable(repo: str, revision: str | None, reason: str) -> ModelSourceError:
    """The error for a hub model that is not cached while the hub cannot be reached, saying how to provide it."""
    rev = f" --revision {revision}" if revision else ""
    return ModelSourceError(
        f"model 'hf:{repo}{'@' + revision if revision else ''}' is not in the local Hugging Face cache "
        f"({constants.HF_HUB_CACHE}) and the Hugging Face hub cannot be reached ({reason}).\n"
        "To provide it, either:\n"
        f"  - on a machine with internet run `hf download {repo}{rev}`, then copy its Hugging Face cache "
        "(~/.cache/huggingface/hub, or $HF_HOME/hub) to this machine at the path above "
        "(or point HF_HOME at the copy); or\n"
        "  - set the recipe's model to a local directory holding config.json, the weights and the "
        "tokenizer files.")

