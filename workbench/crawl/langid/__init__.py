"""Language identification for the crawl: a seed-trained character n-gram model for the
target languages, a general fastText model for everything else, and a combination of both.

Every identifier returns ``[(code, score), ...]`` with FLORES-style codes (``srd_Latn``),
sorted by score, best first; an empty list means "no idea" (e.g. no letters at all).

One module per job:

- ``base``: the prediction type, the :class:`LanguageIdentifier` protocol, batched prediction;
- ``text_script``: the dominant script of a text (each letter's script from :mod:`workbench.text`);
- ``ngrams`` and ``charngram``: the seed model's character n-grams and the model itself;
- ``codes``: fastText labels as FLORES codes; ``fasttext``: the general fastText models and the crawl's
  ``general_lid`` setting;
- ``confusion``: what the general model confuses with the seed languages, measured on the seed text;
- ``target_aware``: the combination of both models and the evidence a rare language needs;
- ``training``: seed files in, a trained :class:`TargetAwareIdentifier` out.
"""

from .base import LanguageIdentifier, Prediction, predict_batch
from .charngram import CharNgramIdentifier
from .charngram import _KeyIndex as _KeyIndex
from .codes import SCRIPT_LANGUAGE, code_in_script, fasttext_label_to_code, scripts_of
from .confusion import GeneralConfusion, find_confusables, measure_confusion
from .fasttext import (
    GENERAL_SETTINGS,
    FastTextFileIdentifier,
    FastTextIdentifier,
    default_general_identifier,
    general_identifier,
)
from .fasttext import _merge_labels as _merge_labels
from .fasttext import _warn_fasttext_missing as _warn_fasttext_missing
from .ngrams import normalize_for_ngrams
from .target_aware import EvidenceRules, TargetAwareIdentifier
from .text_script import _char_script as _char_script
from .text_script import _han_variant as _han_variant
from .text_script import dominant_script, dominant_scripts
from .training import combine, read_seed_dir, train_identifier

__all__ = [
    "GENERAL_SETTINGS", "SCRIPT_LANGUAGE", "CharNgramIdentifier", "EvidenceRules", "FastTextFileIdentifier",
    "FastTextIdentifier", "GeneralConfusion", "LanguageIdentifier", "Prediction", "TargetAwareIdentifier",
    "code_in_script", "combine", "default_general_identifier", "dominant_script", "dominant_scripts",
    "fasttext_label_to_code", "find_confusables", "general_identifier", "measure_confusion", "normalize_for_ngrams",
    "predict_batch", "read_seed_dir", "scripts_of", "train_identifier",
]
