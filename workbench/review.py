"""Human review of translations: blind ratings by named reviewers, their agreement, and per-system means.

Ratings live in the run store (``<run>/reviews.jsonl``, one appended and synced line per rating; a later
rating of the same item by the same reviewer replaces the earlier one). Items are one output of one
system for one sentence; a reviewer sees them in an order of their own (seeded by their name) with
the system hidden, so ratings are blind. Criteria:

- ``adequacy``: is the meaning of the source preserved (1-5);
- ``fluency``: is it natural text in the target language (1-5);
- ``orthography``: does it follow the expected orthography/variety (1-5);
- ``invented``: does it contain facts that are not in the source (yes/no).

Agreement is Krippendorff's alpha (ordinal for the scales, nominal for ``invented``) over the items
rated by at least two reviewers, with the share of exactly equal pairs beside it.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from .errors import DataError

REVIEWS_FILE = "reviews.jsonl"
SCALES = ("adequacy", "fluency", "orthography")
CRITERIA = (*SCALES, "invented")
SCALE_RANGE = (1, 5)
MAX_NAME = 64
MAX_COMMENT = 2000


@dataclass(frozen=True)
class Item:
    """One output to rate: a system's translation of one sentence (the system is not shown to reviewers)."""

    direction: str
    index: int
    system: str
    source: str
    reference: str
    hypothesis: str

    @property
    def key(self) -> str:
        return f"{self.direction}|{self.index}|{self.system}"


def items(translations: pd.DataFrame) -> list[Item]:
    """Every output of a :meth:`workbench.run.Run.translations` frame as an item."""
    return [Item(r.direction, int(r.index), r.system, r.source, r.reference, r.hypothesis)
            for r in translations.itertuples()]


def check_reviewer(name: str) -> str:
    """A reviewer name, stripped; one line, 1-64 characters."""
    name = (name or "").strip()
    if not name or len(name) > MAX_NAME or "\n" in name:
        raise DataError(f"reviewer: give your name (1-{MAX_NAME} characters, one line)")
    return name


def blind_order(all_items: list[Item], reviewer: str) -> list[Item]:
    """The items in this reviewer's own random order (stable across sessions, different per reviewer)."""
    seed = int.from_bytes(hashlib.sha256(check_reviewer(reviewer).encode()).digest()[:8], "big")
    order = sorted(all_items, key=lambda item: item.key)
    random.Random(seed).shuffle(order)
    return order


def next_item(all_items: list[Item], reviewer: str, ratings: list[dict[str, Any]]) -> Item | None:
    """The first item in the reviewer's blind order they have not rated yet (None: all done)."""
    done = {r["item"] for r in ratings if r["reviewer"] == check_reviewer(reviewer)}
    return next((item for item in blind_order(all_items, reviewer) if item.key not in done), None)


def rating_record(item: Item, reviewer: str, scores: dict[str, Any], comment: str = "") -> dict[str, Any]:
    """A validated rating: each scale an integer 1-5, ``invented`` a boolean."""
    record: dict[str, Any] = {"item": item.key, "direction": item.direction, "index": item.index,
                              "system": item.system, "reviewer": check_reviewer(reviewer), "time": time.time()}
    low, high = SCALE_RANGE
    for scale in SCALES:
        value = scores.get(scale)
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise DataError(f"{scale}: give a whole number from {low} to {high} (got {value!r})")
        record[scale] = value
    invented = scores.get("invented")
    if not isinstance(invented, bool):
        raise DataError(f"invented: say yes or no (got {invented!r})")
    record["invented"] = invented
    record["comment"] = str(comment or "")[:MAX_COMMENT]
    return record


def add_rating(run_root: Path, record: dict[str, Any]) -> None:
    """Append one rating to the run's reviews file (flushed and synced)."""
    path = Path(run_root) / REVIEWS_FILE
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def load_ratings(run_root: Path) -> list[dict[str, Any]]:
    """The run's ratings, the latest per (reviewer, item); torn or invalid lines skipped."""
    path = Path(run_root) / REVIEWS_FILE
    if not path.is_file():
        return []
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
            latest[(record["reviewer"], record["item"])] = record
        except (json.JSONDecodeError, KeyError, TypeError):
            continue
    return list(latest.values())


def summary(ratings: list[dict[str, Any]]) -> pd.DataFrame:
    """Per system and direction: ratings, mean adequacy/fluency/orthography, share with invented facts."""
    columns = ["system", "direction", "ratings", "reviewers", *SCALES, "invented_rate"]
    if not ratings:
        return pd.DataFrame(columns=columns)
    frame = pd.DataFrame(ratings)
    grouped = frame.groupby(["system", "direction"], sort=False)
    out = grouped[list(SCALES)].mean()
    out["invented_rate"] = grouped["invented"].mean()
    out["ratings"] = grouped.size()
    out["reviewers"] = grouped["reviewer"].nunique()
    return out.reset_index()[columns]


def records(ratings: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The summary as scoreboard-shaped records (kind ``human``), to show beside the automatic metrics."""
    out = []
    for row in summary(ratings).itertuples():
        stage, _, variant = row.system.partition("/")
        for metric in (*SCALES, "invented_rate"):
            out.append({"stage": stage, "variant": variant or None, "kind": "human", "direction": row.direction,
                        "metric": f"human_{metric}", "value": float(getattr(row, metric)), "n": int(row.ratings)})
    return out


def agreement(ratings: list[dict[str, Any]]) -> pd.DataFrame:
    """Per criterion: items rated by two or more reviewers, Krippendorff's alpha, share of equal pairs."""
    import numpy as np

    columns = ["criterion", "items", "reviewers", "alpha", "exact_agreement"]
    if not ratings:
        return pd.DataFrame(columns=columns)
    reviewers = sorted({r["reviewer"] for r in ratings})
    by_item: dict[str, dict[str, dict[str, Any]]] = {}
    for r in ratings:
        by_item.setdefault(r["item"], {})[r["reviewer"]] = r
    shared = [key for key, who in by_item.items() if len(who) >= 2]
    rows = []
    for criterion in CRITERIA:
        alpha, exact = None, None
        if shared and len(reviewers) >= 2:
            data = np.full((len(reviewers), len(shared)), np.nan)
            pairs = equal = 0
            for j, key in enumerate(shared):
                values = []
                for i, reviewer in enumerate(reviewers):
                    if reviewer in by_item[key]:
                        data[i, j] = float(by_item[key][reviewer][criterion])
                        values.append(data[i, j])
                for a in range(len(values)):
                    for b in range(a + 1, len(values)):
                        pairs += 1
                        equal += values[a] == values[b]
            exact = equal / pairs if pairs else None
            alpha = _alpha(data, "nominal" if criterion == "invented" else "ordinal")
        rows.append({"criterion": criterion, "items": len(shared), "reviewers": len(reviewers), "alpha": alpha,
                     "exact_agreement": exact})
    return pd.DataFrame(rows, columns=columns)


def _alpha(data: Any, level: str) -> float | None:
    """Krippendorff's alpha, or None where it is undefined (every rating the same value)."""
    import krippendorff
    import numpy as np

    values = data[~np.isnan(data)]
    if values.size == 0 or np.unique(values).size < 2:
        return None
    return float(krippendorff.alpha(reliability_data=data, level_of_measurement=level))


__all__ = ["CRITERIA", "Item", "add_rating", "agreement", "blind_order", "items", "load_ratings", "next_item",
           "rating_record", "records", "summary"]
