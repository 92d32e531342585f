"""Human review of translations: blind ratings by named reviewers, their agreement, and per-system means.

Ratings live in the run store (``<run>/reviews.jsonl``, one appended and synced line per rating; a later
rating of the same item by the same reviewer replaces the earlier one). Items are one output of one
system for one sentence. Blindness: outside the server an item is known only by an opaque id (an HMAC
of its key with the run's secret, ``<run>/review-secret``), never by its system. Overlap: each item
is given to reviewers until it has ``ratings_per_item`` (k >= 2) ratings from different people, items
already rated by someone first, so that agreement can be measured; otherwise a reviewer's items come
in an order of their own (seeded by their name). Two windows, one reviewer: a rating is saved only if
the form was opened on the reviewer's current rating of that item (none, or the one being edited);
otherwise it is refused with a notice (the first save wins, see :func:`save_rating`). Criteria:

- ``adequacy``: is the meaning of the source preserved (1-5);
- ``fluency``: is it natural text in the target language (1-5);
- ``orthography``: does it follow the expected orthography/variety (1-5);
- ``invented``: does it contain facts that are not in the source (yes/no).

Agreement is Krippendorff's alpha (ordinal for the scales, nominal for ``invented``) over the items
rated by at least two reviewers, with the share of exactly equal pairs beside it.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import os
import random
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import krippendorff
import numpy as np
import pandas as pd

from .errors import DataError
from .io import atomic_write_text

REVIEWS_FILE = "reviews.jsonl"
SECRET_FILE = "review-secret"
SETTINGS_FILE = "review-settings.json"
DEFAULT_RATINGS_PER_ITEM = 2
RATINGS_PER_ITEM_RANGE = (2, 10)
MAX_GUIDELINES = 10_000
DEFAULT_GUIDELINES = """\
- adequacy: 5 all the meaning of the source is there; 3 the main point survives; 1 unrelated or empty.
- fluency: 5 natural text a speaker would write; 3 understandable but awkward; 1 not the language.
- orthography / variety: 5 the expected spelling and variety throughout; 1 another variety or spelling.
- invented facts: tick when the output says something the source does not.
"""
EXPORT_FIELDS = ("direction", "item", "index", "source", "reference", "hypothesis", "system", "reviewer",
                 "adequacy", "fluency", "orthography", "invented", "comment", "time")
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


class RatingConflict(DataError):
    """The reviewer's rating of this item changed since the form was opened (another window saved one)."""


def run_secret(run_root: Path) -> bytes:
    """The run's review secret (created once, readable by the owner only); it never leaves the server."""
    path = Path(run_root) / SECRET_FILE
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(secrets.token_hex(32))
    return path.read_text(encoding="utf-8").strip().encode()


def opaque_id(secret: bytes, key: str) -> str:
    """The id the browser sees for the item ``key``: it does not reveal the system, sentence or direction."""
    return hmac.new(secret, key.encode(), hashlib.sha256).hexdigest()[:16]


def by_opaque_id(run_root: Path, all_items: list[Item]) -> dict[str, Item]:
    """The server-side mapping from opaque ids to items."""
    secret = run_secret(run_root)
    return {opaque_id(secret, item.key): item for item in all_items}


def load_settings(run_root: Path) -> dict[str, Any]:
    """The run's review settings: ``ratings_per_item`` (k) and ``guidelines`` (Markdown), with defaults."""
    settings = {"ratings_per_item": DEFAULT_RATINGS_PER_ITEM, "guidelines": DEFAULT_GUIDELINES}
    path = Path(run_root) / SETTINGS_FILE
    try:
        stored = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, json.JSONDecodeError):
        stored = {}
    if isinstance(stored, dict):
        settings.update({k: stored[k] for k in settings if k in stored})
    return settings


def save_settings(run_root: Path, ratings_per_item: Any, guidelines: str) -> dict[str, Any]:
    """Validate and store the run's review settings (k between 2 and 10; guidelines up to 10,000 characters)."""
    low, high = RATINGS_PER_ITEM_RANGE
    try:
        k = int(ratings_per_item)
    except (TypeError, ValueError):
        k = None
    if k is None or k != ratings_per_item or not low <= k <= high:
        raise DataError(f"ratings per item: give a whole number from {low} to {high} (got {ratings_per_item!r})")
    settings = {"ratings_per_item": k, "guidelines": str(guidelines or "")[:MAX_GUIDELINES]}
    atomic_write_text(Path(run_root) / SETTINGS_FILE, json.dumps(settings, ensure_ascii=False, indent=2))
    return settings


def blind_order(all_items: list[Item], reviewer: str) -> list[Item]:
    """The items in this reviewer's own random order (stable across sessions, different per reviewer)."""
    seed = int.from_bytes(hashlib.sha256(check_reviewer(reviewer).encode()).digest()[:8], "big")
    order = sorted(all_items, key=lambda item: item.key)
    random.Random(seed).shuffle(order)
    return order


def rating_counts(ratings: list[dict[str, Any]]) -> dict[str, int]:
    """Item key -> how many different reviewers rated it."""
    counts: dict[str, set[str]] = {}
    for r in ratings:
        counts.setdefault(r["item"], set()).add(r["reviewer"])
    return {key: len(who) for key, who in counts.items()}


def next_item(all_items: list[Item], reviewer: str, ratings: list[dict[str, Any]],
              ratings_per_item: int = DEFAULT_RATINGS_PER_ITEM) -> Item | None:
    """The reviewer's next item: one they have not rated that still needs ratings (fewer than k).

    Items that others have started come first (so that each soon has k independent ratings and agreement
    can be measured), then the reviewer's own blind order. None: nothing left for this reviewer.
    """
    done = {r["item"] for r in ratings if r["reviewer"] == check_reviewer(reviewer)}
    counts = rating_counts(ratings)
    open_items = [(position, item) for position, item in enumerate(blind_order(all_items, reviewer))
                  if item.key not in done and counts.get(item.key, 0) < ratings_per_item]
    if not open_items:
        return None
    return min(open_items, key=lambda pair: (-counts.get(pair[1].key, 0), pair[0]))[1]


def progress(all_items: list[Item], reviewer: str, ratings: list[dict[str, Any]],
             ratings_per_item: int = DEFAULT_RATINGS_PER_ITEM) -> dict[str, int]:
    """The reviewer's count, the items complete (k ratings), the total and k, over ``all_items``."""
    keys = {item.key for item in all_items}
    who = check_reviewer(reviewer)
    counts = rating_counts([r for r in ratings if r["item"] in keys])
    return {"mine": sum(1 for r in ratings if r["reviewer"] == who and r["item"] in keys),
            "complete": sum(1 for n in counts.values() if n >= ratings_per_item), "total": len(keys),
            "ratings_per_item": ratings_per_item}


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


def save_rating(run_root: Path, record: dict[str, Any], based_on: float | None) -> dict[str, Any]:
    """Save ``record`` unless the reviewer's rating of that item changed since their form was opened.

    ``based_on`` is the ``time`` of the reviewer's rating the form showed (None: the form showed a new
    item). If the stored rating differs (another window of the same reviewer saved one meanwhile), the
    save is refused with :class:`RatingConflict`: the first save wins and nothing is silently replaced.
    The check and the append hold an exclusive lock on the reviews file.
    """
    path = Path(run_root) / REVIEWS_FILE
    with open(path, "a", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            current = own_rating(load_ratings(run_root), record["reviewer"], record["item"])
            if current is not None and current.get("time") != based_on:
                when = time.strftime("%H:%M:%S", time.localtime(current.get("time") or 0))
                raise RatingConflict(f"you already rated this output at {when} (in another window?). "
                                     "That rating stands; pick it under 'your ratings' to change it.")
            if current is None and based_on is not None:
                raise RatingConflict("your earlier rating of this output is gone; press Next.")
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
    return record


def own_rating(ratings: list[dict[str, Any]], reviewer: str, key: str) -> dict[str, Any] | None:
    """The reviewer's current rating of item ``key`` (None: not rated)."""
    return next((r for r in ratings if r["reviewer"] == reviewer and r["item"] == key), None)


def export_rows(run_root: Path, all_items: list[Item]) -> list[dict[str, Any]]:
    """Every current rating, unblinded, with its item's texts (for the run's owner): :data:`EXPORT_FIELDS`."""
    secret = run_secret(run_root)
    by_key = {item.key: item for item in all_items}
    rows = []
    for rating in sorted(load_ratings(run_root), key=lambda r: (r.get("direction", ""), r.get("index", 0),
                                                                  r.get("system", ""), r["reviewer"])):
        item = by_key.get(rating["item"])
        rows.append({"direction": rating.get("direction"), "item": opaque_id(secret, rating["item"]),
                     "index": rating.get("index"), "source": item.source if item else None,
                     "reference": item.reference if item else None, "hypothesis": item.hypothesis if item else None,
                     "system": rating.get("system"), "reviewer": rating["reviewer"],
                     **{c: rating.get(c) for c in CRITERIA}, "comment": rating.get("comment", ""),
                     "time": rating.get("time")})
    return rows


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
    columns = ["criterion", "items", "reviewers", "alpha", "exact_agreement"]  # items: rated by 2 or more
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
    values = data[~np.isnan(data)]
    if values.size == 0 or np.unique(values).size < 2:
        return None
    return float(krippendorff.alpha(reliability_data=data, level_of_measurement=level))


__all__ = ["CRITERIA", "EXPORT_FIELDS", "Item", "RatingConflict", "add_rating", "agreement", "blind_order",
           "by_opaque_id", "export_rows", "items", "load_ratings", "load_settings", "next_item", "opaque_id",
           "own_rating", "progress", "rating_record", "records", "save_rating", "save_settings", "summary"]
