"""Behaviour aggregates: what the engine needs to know about a lead's events.

The engine never reads events itself: readers ship them coded (`CodedEvents`: lead, type code,
time, one bit per distinct `where` condition, which PostgreSQL computes by jsonb containment)
and `aggregate_coded_events` is the one aggregation of them, for rule scoring (through
`rule_behaviour`), training and model scoring alike.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import repeat
from typing import TYPE_CHECKING, Any

import numpy as np

from .columns import ColumnView
from .predicates import evaluate
from .spec import InactivityRule, PropertyTest, where_value_document

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
    - `window_exits[i, j]` (optional, epoch seconds): the earliest time one of the events
      counted in `counts[i, j]` leaves rule j's window (its time + window_days); inf for none.
    - `next_event[i]` (optional, epoch seconds): lead i's earliest event after `as_of` (any
      type the reader shipped); inf for none. Both feed `next_due_epochs`.

    Arrays are coerced to int64 / float64 on construction; shapes are checked.
    """

    counts: np.ndarray
    decayed: np.ndarray
    days_since_activity: np.ndarray
    window_exits: np.ndarray | None = None
    next_event: np.ndarray | None = None

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
        if self.window_exits is not None:
            exits = np.asarray(self.window_exits, dtype=np.float64)
            if exits.shape != counts.shape:
                raise ValueError(f"window_exits must have the shape of counts {counts.shape}")
            object.__setattr__(self, "window_exits", exits)
        if self.next_event is not None:
            upcoming = np.asarray(self.next_event, dtype=np.float64)
            if upcoming.shape != (n,):
                raise ValueError(f"next_event must have shape ({n},)")
            object.__setattr__(self, "next_event", upcoming)

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


def property_value(properties: Any, key: str) -> Any:
    """An event property as an operator sees it: None (missing) when the event has no such
    property or the value is an object or a list (operators compare scalars only)."""
    if not isinstance(properties, dict):
        return None
    value = properties.get(key)
    return None if isinstance(value, dict | list) else value


def where_holds(properties: Sequence[Any], key: str, value: Any) -> np.ndarray:
    """Boolean per event: does the `where` pair `(key, value)` hold on its properties?

    A scalar value asks for JSON equality (the key present, bools equal only bools, numbers by
    value). A `PropertyTest` is the attribute predicate itself (`scoring.engine.predicates`)
    over the property's values: one definition of the operators for leads and events."""
    if isinstance(value, PropertyTest):
        values = np.empty(len(properties), dtype=object)
        values[:] = [property_value(p, key) for p in properties]
        return evaluate(ColumnView(values, len(properties)), value.op, value.value)
    return np.fromiter(
        (isinstance(p, dict) and key in p and json_equal(p[key], value) for p in properties),
        dtype=bool,
        count=len(properties),
    )


def event_matches_where(properties: Any, where: tuple[tuple[str, Any], ...]) -> bool:
    """True when every `(key, value)` of `where` holds for one event's `properties`."""
    return all(bool(where_holds([properties], key, value)[0]) for key, value in where)


@dataclass(frozen=True, eq=False)
class CodedEvents:
    """Events as the readers ship them, one entry per event: `lead_index` (0..n-1, the
    event's lead among the n leads), `type_code` (1 + index into the reader's event types;
    0 for a type no term reads: it counts only towards the last activity), `epoch` (seconds)
    and `bits` (m, words) int64: bit `c % 63` of word `c // 63` is set when the event meets
    condition c (a `where` pair: the property present and JSON-equal to the value, or meeting
    the pair's `PropertyTest`)."""

    lead_index: np.ndarray
    type_code: np.ndarray
    epoch: np.ndarray
    bits: np.ndarray

    @property
    def m(self) -> int:
        return int(self.lead_index.shape[0])


@dataclass(frozen=True)
class EventTerm:
    """One aggregate to compute per lead: the events of type code `type_code` meeting every
    condition in `conditions` (bit positions) with `0 <= age_days <= window_days`; their
    count and their sum of `0.5 ** (age_days / half_life_days)` (1 each without half-life)."""

    type_code: int
    window_days: float
    half_life_days: float | None = None
    conditions: tuple[int, ...] = ()


@dataclass(frozen=True, eq=False)
class EventAggregates:
    """`counts` int64 and `decayed` float (n, k), one column per term; `last_epoch` (n,) the
    last event at or before `as_of` of any type (NaN: none); `last_epoch_by_type`
    (n, n_types), the last per type code 1..n_types (NaN: none), when asked for. With
    `with_due`: `window_exits` (n, k), per term the earliest time + window_days of the events
    it counted (inf: none), and `next_event` (n,), the earliest event after `as_of` (inf: none)."""

    counts: np.ndarray
    decayed: np.ndarray
    last_epoch: np.ndarray
    last_epoch_by_type: np.ndarray | None
    window_exits: np.ndarray | None = None
    next_event: np.ndarray | None = None


def aggregate_coded_events(
    terms: Sequence[EventTerm],
    events: CodedEvents,
    n: int,
    as_of: float,
    *,
    n_types: int = 0,
    with_due: bool = False,
) -> EventAggregates:
    """The one aggregation of events for rule scoring, training and model scoring.

    Events after `as_of` never count (ages are `(as_of - epoch) / 86400` days). The events are
    grouped by type code once (a stable sort, so each lead's events keep their order and its
    sums do not depend on how many other types there are); each term then looks only at
    its own type's events."""
    lead_index = np.asarray(events.lead_index, dtype=np.intp)
    epoch = np.asarray(events.epoch, dtype=np.float64)
    codes = np.asarray(events.type_code, dtype=np.int64)
    bits = np.asarray(events.bits, dtype=np.int64)
    if bits.ndim != 2 or bits.shape[0] != lead_index.shape[0]:
        raise ValueError(f"bits must have shape ({lead_index.shape[0]}, words)")
    k = len(terms)
    counts = np.zeros((n, k), dtype=np.int64, order="F")
    decayed = np.zeros((n, k), dtype=np.float64, order="F")
    last = np.full(n, -np.inf)
    by_type = np.full((n, n_types), np.nan) if n_types else None
    exits = np.full((n, k), np.inf, order="F") if with_due else None
    upcoming = np.full(n, np.inf) if with_due else None
    if lead_index.shape[0] and n:
        past = epoch <= as_of
        if upcoming is not None and not past.all():
            # Any later event may start to count or end an inactivity: the earliest one bounds
            # when this lead's score can next change.
            np.minimum.at(upcoming, lead_index[~past], epoch[~past])
        if not past.all():
            lead_index, epoch, codes, bits = (
                lead_index[past],
                epoch[past],
                codes[past],
                bits[past],
            )
        np.maximum.at(last, lead_index, epoch)
        order = np.argsort(codes, kind="stable")
        sorted_codes = codes[order]
        wanted = {term.type_code for term in terms} | set(range(1, n_types + 1))
        for code in sorted(wanted):
            low, high = np.searchsorted(sorted_codes, [code, code + 1])
            if low == high:
                continue
            rows = order[low:high]
            leads, times = lead_index[rows], epoch[rows]
            age_days = (as_of - times) / SECONDS_PER_DAY
            if by_type is not None and 1 <= code <= n_types:
                latest = np.full(n, -np.inf)
                np.maximum.at(latest, leads, times)
                by_type[:, code - 1] = np.where(np.isneginf(latest), np.nan, latest)
            for j, term in enumerate(terms):
                if term.type_code != code:
                    continue
                matched = age_days <= term.window_days
                for position in term.conditions:
                    word = bits[rows, position // 63]
                    matched &= ((word >> (position % 63)) & 1).astype(bool)
                selected = leads[matched]
                counts[:, j] = np.bincount(selected, minlength=n)
                if exits is not None:
                    leaving = np.full(n, np.inf)
                    np.minimum.at(
                        leaving, selected, times[matched] + term.window_days * SECONDS_PER_DAY
                    )
                    exits[:, j] = leaving
                if term.half_life_days is None:
                    decayed[:, j] = counts[:, j]
                else:
                    weights = np.power(0.5, age_days[matched] / term.half_life_days)
                    decayed[:, j] = np.bincount(selected, weights=weights, minlength=n)
    last_epoch = np.where(np.isneginf(last), np.nan, last)
    return EventAggregates(counts, decayed, last_epoch, by_type, exits, upcoming)


@dataclass(frozen=True)
class RuleEventPlan:
    """What a reader ships for a compiled rule set's event rules: the event types (type code
    = 1 + index), the distinct `where` conditions (bit = index; each a `(key, value)` pair
    and its JSON text `{"key": value}`, which a database matches by containment), and one
    term per event rule, in `compiled.event_rules` order. `conditions` values are JSON
    scalars (equality) or `PropertyTest`s (operators), which a database evaluates with a
    predicate of its own (`scoring.event_reader.condition_sql`)."""

    event_types: tuple[str, ...]
    conditions: tuple[tuple[str, Any], ...]
    condition_json: tuple[str, ...]
    terms: tuple[EventTerm, ...]
    needs_inactivity: bool
    longest_window_days: float

    @property
    def words(self) -> int:
        """int64 words of condition bits per event (63 bits each, the sign bit unused)."""
        return -(-len(self.conditions) // 63)


def rule_event_plan(compiled: CompiledRuleSet) -> RuleEventPlan:
    rules: list[EventRule] = [rule for _, rule in compiled.event_rules]
    types = tuple(sorted({rule.event_type for rule in rules}))
    # A condition is identified by its JSON text: as tuples, ("plan", True) and ("plan", 1)
    # are equal and would share one bit, though JSON tells them apart.
    by_text: dict[str, tuple[str, Any]] = {}
    for rule in rules:
        for pair in rule.where:
            by_text.setdefault(_condition_json(pair), pair)
    texts = list(by_text)
    terms = tuple(
        EventTerm(
            type_code=types.index(rule.event_type) + 1,
            window_days=rule.window_days,
            half_life_days=rule.half_life_days,
            conditions=tuple(texts.index(_condition_json(pair)) for pair in rule.where),
        )
        for rule in rules
    )
    return RuleEventPlan(
        event_types=types,
        conditions=tuple(by_text.values()),
        condition_json=tuple(texts),
        terms=terms,
        needs_inactivity=any(isinstance(r, InactivityRule) for r in compiled.rules),
        longest_window_days=max((rule.window_days for rule in rules), default=0.0),
    )


def _condition_json(pair: tuple[str, Any]) -> str:
    key, value = pair
    return json.dumps({key: where_value_document(value)})


def condition_bits(
    properties: Sequence[dict[str, Any] | None], conditions: Sequence[tuple[str, Any]]
) -> np.ndarray:
    """(m, words) int64 condition bits of events from their properties, in Python: what
    PostgreSQL computes in SQL, for a database that cannot (SQLite)."""
    words = -(-len(conditions) // 63)
    bits = np.zeros((len(properties), words), dtype=np.int64)
    for c, (key, value) in enumerate(conditions):
        met = where_holds(properties, key, value)
        bits[met, c // 63] |= np.int64(1) << np.int64(c % 63)
    return bits


def rule_behaviour(
    plan: RuleEventPlan, events: CodedEvents, created_at: np.ndarray, as_of: float
) -> BehaviourAggregates:
    """`BehaviourAggregates` of n leads (n = len(created_at), creation epochs) from their
    coded events: per event rule its count and decayed sum, and the days since each lead's
    last event at or before `as_of` (since its creation when it has none)."""
    created_at = np.asarray(created_at, dtype=np.float64)
    n = created_at.shape[0]
    if events.m and (events.lead_index.min() < 0 or events.lead_index.max() >= n):
        raise ValueError(f"lead_index must lie in [0, {n})")
    aggregated = aggregate_coded_events(plan.terms, events, n, as_of, with_due=True)
    last = np.where(np.isnan(aggregated.last_epoch), created_at, aggregated.last_epoch)
    days_since = (as_of - last) / SECONDS_PER_DAY
    return BehaviourAggregates(
        aggregated.counts,
        aggregated.decayed,
        days_since,
        aggregated.window_exits,
        aggregated.next_event,
    )


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
    """`BehaviourAggregates` for `compiled.event_rules` from raw events given column-wise
    (`lead_index` 0..n-1, `event_types`, `occurred_at` epoch seconds, `properties` dicts or
    None): coded (`code_events`) and aggregated by `rule_behaviour`, as every reader does.
    Events with a NaN time are ignored."""
    lead_index = np.asarray(lead_index, dtype=np.intp)
    occurred_at = np.asarray(occurred_at, dtype=np.float64)
    m = lead_index.shape[0]
    if np.shape(event_types) != (m,) or occurred_at.shape != (m,) or len(properties) != m:
        raise ValueError("lead_index, event_types, occurred_at and properties differ in length")
    if np.shape(created_at) != (n,):
        raise ValueError(f"created_at must have shape ({n},)")
    plan = rule_event_plan(compiled)
    events = code_events(plan, lead_index, event_types, occurred_at, properties)
    return rule_behaviour(plan, events, created_at, as_of)


def code_events(
    plan: RuleEventPlan,
    lead_index: np.ndarray,
    event_types: Sequence[str] | np.ndarray,
    occurred_at: np.ndarray,
    properties: Sequence[dict[str, Any] | None],
) -> CodedEvents:
    """Raw events as `CodedEvents` for `plan` (NaN times dropped)."""
    lead_index = np.asarray(lead_index, dtype=np.intp)
    occurred_at = np.asarray(occurred_at, dtype=np.float64)
    m = lead_index.shape[0]
    # One pass mapping each event's type to its code (a C-level map over a dict).
    type_codes = {t: i + 1 for i, t in enumerate(plan.event_types)}
    types = np.asarray(event_types, dtype=object).tolist()
    codes = np.fromiter(map(type_codes.get, types, repeat(0)), dtype=np.int64, count=m)
    # Only events of a type some rule reads can meet a condition that matters.
    bits = np.zeros((m, plan.words), dtype=np.int64)
    typed = np.flatnonzero(codes > 0)
    if plan.conditions and typed.shape[0]:
        bits[typed] = condition_bits([properties[e] for e in typed.tolist()], plan.conditions)
    known = ~np.isnan(occurred_at)
    return CodedEvents(lead_index[known], codes[known], occurred_at[known], bits[known])
