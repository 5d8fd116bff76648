"""Behaviour aggregates: what the engine needs to know about a lead's events.

The engine never sees events. `scoring.features.read_behaviour` computes these aggregates for
the bulk and the real-time rescore alike (PostgreSQL: packed event records aggregated with
NumPy; SQLite: in SQL). `aggregate_events` computes them here from raw events: the plain
reference the tests hold those reads to.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import repeat
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .compiler import CompiledRuleSet
    from .spec import EventRule

SECONDS_PER_DAY = 86_400.0


@dataclass(frozen=True, eq=False)
class BehaviourAggregates:
    """Per-lead event aggregates for the event rules of one compiled rule set.

    Column j of `counts` and `decayed` belongs to `compiled.event_rules[j]`.

    - `counts[i, j]`: lead i's events matching event rule j with `0 <= age_days <= window_days`,
      where `age_days = (as_of - occurred_at) / 86400`; events after `as_of` never count.
      Matching: same `event_type` and every `where` (key, value) equal to the event's property
      (JSON equality: the key is present, bools equal only bools, numbers compare by value).
    - `decayed[i, j]`: the sum over those events of `0.5 ** (age_days / half_life_days)`, each
      term 1 when the rule has no half-life (then `decayed == counts`).
    - `days_since_activity[i]`: days from the lead's last event at or before `as_of` (any type)
      to `as_of`, or from its creation when it has none. NaN means unknown: inactivity rules do
      not fire for that lead.

    Arrays are coerced to int64 / float64 on construction; shapes are checked.
    """

    counts: np.ndarray
    decayed: np.ndarray
    days_since_activity: np.ndarray

    def __post_init__(self) -> None:
        counts = np.asarray(self.counts, dtype=np.int64)
        decayed = np.asarray(self.decayed, dtype=np.float64)
        days = np.asarray(self.days_since_activity, dtype=np.float64)
        if days.ndim != 1:
            raise ValueError("days_since_activity must be one-dimensional (one value per lead)")
        n = days.shape[0]
        if counts.ndim != 2 or counts.shape[0] != n:
            raise ValueError(f"counts must have shape ({n}, k), got {counts.shape}")
        if decayed.shape != counts.shape:
            raise ValueError(f"decayed must have the shape of counts {counts.shape}")
        if not np.isfinite(decayed).all():
            raise ValueError("decayed must be finite")
        # Frozen dataclass: coercion has to bypass __setattr__.
        object.__setattr__(self, "counts", counts)
        object.__setattr__(self, "decayed", decayed)
        object.__setattr__(self, "days_since_activity", days)

    @property
    def n(self) -> int:
        """Number of leads."""
        return int(self.days_since_activity.shape[0])

    @classmethod
    def zeros(
        cls, n: int, k: int, days_since_activity: np.ndarray | None = None
    ) -> BehaviourAggregates:
        """Aggregates for leads without events; `days_since_activity` defaults to unknown (NaN)."""
        days = np.full(n, np.nan) if days_since_activity is None else days_since_activity
        return cls(np.zeros((n, k), dtype=np.int64), np.zeros((n, k)), days)


def json_equal(a: Any, b: Any) -> bool:
    """Equality of two JSON scalars as JSON sees it: true is not 1, 1 is 1.0."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if a is None or b is None:
        return a is None and b is None
    return type(a) is type(b) and isinstance(a, str) and a == b


def event_matches_where(properties: Any, where: tuple[tuple[str, Any], ...]) -> bool:
    """True when every `(key, value)` of `where` is present and JSON-equal in `properties`."""
    if not where:
        return True
    if not isinstance(properties, dict):
        return False
    for key, value in where:
        if key not in properties or not json_equal(properties[key], value):
            return False
    return True


def aggregate_events(
    compiled: CompiledRuleSet,
    lead_index: np.ndarray,
    event_types: np.ndarray,
    occurred_at: np.ndarray,
    properties: Sequence[dict[str, Any] | None],
    created_at: np.ndarray,
    as_of: float,
    n: int,
) -> BehaviourAggregates:
    """Aggregate raw events into `BehaviourAggregates` for `compiled.event_rules`.

    Events are given column-wise, one entry per event: `lead_index` (0..n-1), `event_types`,
    `occurred_at` (epoch seconds) and `properties` (dicts or None). `created_at` (n,) holds each
    lead's creation time in epoch seconds and `as_of` the scoring time. Events with a NaN time
    are ignored. Vectorised per rule; only the `where` filter runs in Python, and only over
    events that already match the rule's type and window.
    """
    lead_index = np.asarray(lead_index, dtype=np.intp)
    occurred_at = np.asarray(occurred_at, dtype=np.float64)
    created_at = np.asarray(created_at, dtype=np.float64)
    m = lead_index.shape[0]
    types = np.asarray(event_types, dtype=object)
    if types.shape != (m,) or occurred_at.shape != (m,) or len(properties) != m:
        raise ValueError("lead_index, event_types, occurred_at and properties differ in length")
    if created_at.shape != (n,):
        raise ValueError(f"created_at must have shape ({n},)")
    if m and (lead_index.min() < 0 or lead_index.max() >= n):
        raise ValueError(f"lead_index must lie in [0, {n})")

    age_days = (as_of - occurred_at) / SECONDS_PER_DAY
    k = len(compiled.event_rules)
    counts = np.zeros((n, k), dtype=np.int64, order="F")
    decayed = np.zeros((n, k), dtype=np.float64, order="F")

    # One pass mapping each event's type to a small code (C-level map over a dict, no Python
    # loop body), instead of one object comparison over all events per rule.
    type_codes = {rule.event_type: code for code, rule in enumerate(_distinct_types(compiled))}
    codes = np.fromiter(map(type_codes.get, types.tolist(), repeat(-1)), dtype=np.intp, count=m)
    for j, (_, rule) in enumerate(compiled.event_rules):
        selected = np.flatnonzero(
            (codes == type_codes[rule.event_type])
            & (age_days >= 0)
            & (age_days <= rule.window_days)
        )
        if rule.where:
            keep = np.fromiter(
                (event_matches_where(properties[e], rule.where) for e in selected.tolist()),
                dtype=bool,
                count=selected.shape[0],
            )
            selected = selected[keep]
        leads = lead_index[selected]
        counts[:, j] = np.bincount(leads, minlength=n)
        if rule.half_life_days is None:
            decayed[:, j] = counts[:, j]
        else:
            terms = np.power(0.5, age_days[selected] / rule.half_life_days)
            decayed[:, j] = np.bincount(leads, weights=terms, minlength=n)

    # Last activity: any event type, at or before as_of.
    last = np.full(n, -np.inf)
    past = occurred_at <= as_of
    np.maximum.at(last, lead_index[past], occurred_at[past])
    last = np.where(np.isneginf(last), created_at, last)
    days_since = (as_of - last) / SECONDS_PER_DAY
    return BehaviourAggregates(counts, decayed, days_since)


def _distinct_types(compiled: CompiledRuleSet) -> list[EventRule]:
    seen: dict[str, EventRule] = {}
    for _, rule in compiled.event_rules:
        seen.setdefault(rule.event_type, rule)
    return list(seen.values())
