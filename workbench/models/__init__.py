"""Models: where they come from, where they run, and loading them.

Every source (``hf:<repo>``, a local directory, ``gguf:<file>``, a short name) resolves to a local Hugging Face
model directory plus a stable fingerprint of its weights (``sources``; the hub in ``hub``, short names in
``registry``, GGUF conversion in ``gguf``, the cache folder, file digests and locks in ``cache``, a local
directory's checks in ``directory``, what is known here in ``listing``). ``device`` picks the device, dtype and
seeds; ``loading`` loads a source or a stage's model reference; ``peak_memory`` measures what a step used.
"""

from .cache import cache_home, sha256_of
from .device import native_bfloat16, pick_device, pick_dtype, seed_everything
from .directory import check_model_dir, local_fingerprint
from .gguf import SOURCE_MARKER, converted_dir
from .listing import list_sources
from .loading import load_for_eval, load_model
from .peak_memory import (
    LIVE_PEAK_ENV,
    peak_memory_mb,
    peak_memory_record,
    peak_reserved_mb,
    reset_peak_memory,
    resident_memory_mb,
)
from .registry import REGISTRY, RegistryModel
from .sources import ResolvedModel, accepted_forms, check_source, resolve_model

__all__ = [
    "LIVE_PEAK_ENV", "REGISTRY", "SOURCE_MARKER", "RegistryModel", "ResolvedModel", "accepted_forms", "cache_home",
    "check_model_dir", "check_source", "converted_dir", "list_sources", "load_for_eval", "load_model",
    "local_fingerprint", "native_bfloat16", "peak_memory_mb", "peak_memory_record", "peak_reserved_mb",
    "pick_device", "pick_dtype", "reset_peak_memory", "resident_memory_mb", "resolve_model", "seed_everything",
    "sha256_of",
]
