"""When a lead's score, band or persona can next change with time alone (no new data).

A stored score is the score as of the time it was computed; windows, inactivity and decay
change it later. `next_due_epochs` gives, per lead, a time by which nothing can have changed
yet, so a scheduler rescores only the leads that are due instead of reading every lead's
events. The bound may be early (rescoring a lead early changes nothing) but never late.
"""

from __future__ import annotations

import math

import numpy as np

from .behaviour import SECONDS_PER_DAY, BehaviourAggregates
from .scorer import ROUNDING_EPSILON, ScoreResult
from .spec import InactivityRule

# Times are float epochs compared with float ages; shaving this much off every exact event time
# (a window exit, an inactivity threshold, an event starting to count) keeps an ulp of rounding
# from putting the due time just after the change it announces.
TIME_MARGIN_SECONDS = 1e-3
# Totals are sums of float products; a boundary is treated as this much nearer than computed.
TOTAL_MARGIN = 1e-7
# Stored times have microsecond resolution, so the earliest "later" time there is. A change
# "right after as_of" (an event exactly at its window's edge) is due this much later.
RESOLUTION_SECONDS = 1e-6


def next_due_epochs(
    result: ScoreResult, behaviour: BehaviourAggregates, as_of: float
) -> np.ndarray:
    """Per lead, the epoch (seconds) at or before which its score, band and persona can first
    differ from `result` (computed as of `as_of`) with time alone; NaN when never. Every value
    is strictly after `as_of`, by at least RESOLUTION_SECONDS (a change right after `as_of`,
    e.g. an event exactly at its window's edge, is due then).

    The earliest of: (a) a counted event leaving its rule's window; (b) a later event starting
    to count (or ending an inactivity); (c) an inactivity rule's threshold being reached;
    (d) for half-life rules, the time the total needs to reach the nearest rounding (or clamp)
    boundary at the fastest rate the decaying contributions could move it (their rate only
    falls as they decay, and a capped one moves only once below its cap, more slowly). A lead
    whose total blends a model probability is due at once: the probability's own inputs age
    in ways the rules do not describe. Personas read only lead fields, so time never moves
    them; bands follow the score. With rule groups, (d) also looks at each group's nearest
    rounding boundary, since group scores, group bands and the grade are stored too.

    Needs `behaviour.window_exits` and `behaviour.next_event` (as `rule_behaviour` gives)."""
    compiled = result.compiled
    n = result.n
    due = np.full(n, np.inf)
    exits = behaviour.window_exits
    upcoming = behaviour.next_event
    if exits is None or upcoming is None:
        raise ValueError("behaviour lacks window_exits / next_event (use rule_behaviour)")
    due = np.fmin(due, upcoming)

    rate = np.zeros(n)
    for j, (r, rule) in enumerate(compiled.event_rules):
        if rule.points == 0:
            continue
        due = np.fmin(due, exits[:, j])
        if rule.half_life_days is not None:
            # Where the rule applies (its persona), |d contribution / d day| is at most this.
            applies = (result.contributions[:, r] != 0) | result.capped[:, r]
            speed = (
                math.log(2) / rule.half_life_days * np.abs(rule.points * behaviour.decayed[:, j])
            )
            rate += np.where(applies, speed, 0.0)

    days_since = behaviour.days_since_activity
    for rule in compiled.rules:
        if isinstance(rule, InactivityRule) and rule.points != 0:
            with np.errstate(invalid="ignore"):
                pending = days_since < rule.days  # NaN (unknown) never fires
            reached = as_of + (rule.days - days_since) * SECONDS_PER_DAY
            due = np.where(pending, np.fmin(due, reached), due)

    due = due - TIME_MARGIN_SECONDS
    decaying = rate > 0
    if decaying.any():
        distance = _distance_to_change(result, compiled.spec.floor, compiled.spec.ceiling)
        if result.group_totals is not None:
            # A group score (and so its band and the grade) can change while the score does
            # not (the score clamped, or groups moving apart): the nearest rounding boundary
            # of any group bounds it too. The group's own rate is at most `rate`, and a
            # clamped group moves later than its boundary says: both only make this earlier.
            for g in range(result.group_totals.shape[1]):
                distance = np.minimum(
                    distance, _rounding_distance(result.group_totals[:, g]) - TOTAL_MARGIN
                )
            distance = np.maximum(distance, 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            moving = as_of + distance / rate * SECONDS_PER_DAY
        due = np.where(decaying, np.fmin(due, moving), due)

    due = np.where(result.model_applied, as_of, due)
    # Strictly after as_of: rescoring at as_of again would change nothing.
    due = np.maximum(due, as_of + RESOLUTION_SECONDS)
    return np.where(np.isinf(due), np.nan, due)


def _rounding_distance(values: np.ndarray) -> np.ndarray:
    """How far each value can move before its rounding half away from zero changes."""
    # Rounding: sign(x) * floor(|x| + 0.5 + eps) changes where |x| + eps - 0.5 is an integer.
    shifted = np.abs(values) + ROUNDING_EPSILON - 0.5
    distance = np.minimum(shifted - np.floor(shifted), np.ceil(shifted) - shifted)
    return np.where(shifted < 0, -shifted, distance)


def _distance_to_change(result: ScoreResult, floor: float, ceiling: float) -> np.ndarray:
    """How far each raw total can move before its rounded, clamped score changes."""
    totals = result.raw_totals
    magnitude = np.abs(totals)
    distance = _rounding_distance(totals)
    # Clamped: the score stays at the ceiling (floor) until the total comes back within half a
    # point of it, however many rounding boundaries lie on the way.
    rounded = np.sign(totals) * np.floor(magnitude + 0.5 + ROUNDING_EPSILON)
    distance = np.where(
        rounded > ceiling, totals - (ceiling - 0.5 + 2 * ROUNDING_EPSILON), distance
    )
    distance = np.where(rounded < floor, (floor + 0.5 - 2 * ROUNDING_EPSILON) - totals, distance)
    return np.maximum(distance - TOTAL_MARGIN, 0.0)
