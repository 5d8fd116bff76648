"""Score leads: personas, per-rule contributions, totals, rounding, clamping and bands.

Everything is column-wise NumPy over the leads; Python loops run over rules, personas, bands
and distinct column values, never over leads.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from ._bulk import gc_paused
from .behaviour import BehaviourAggregates
from .columns import ColumnView
from .compiler import CompiledRuleSet, band_of
from .predicates import evaluate
from .spec import EMAIL_DOMAIN_TYPE_FIELD, AttributeRule, Condition, EventRule

# Totals are sums of float products (points * decayed, model blends), so a total that is
# "really" 2.5 can arrive as 2.4999999999999996. Rounding adds this much before flooring: any
# magnitude within 1e-9 below a .5 boundary rounds away from zero as if it were on it. Points
# are entered by people with a few decimals, so a genuine total that close to .5 without being
# .5 does not occur, while float noise on scores in the hundreds is ~1e-13.
ROUNDING_EPSILON = 1e-9


def round_half_away_from_zero(values: np.ndarray) -> np.ndarray:
    """Round to integers, halves away from zero (2.5 -> 3, -2.5 -> -3), with ROUNDING_EPSILON."""
    values = np.asarray(values, dtype=np.float64)
    return np.sign(values) * np.floor(np.abs(values) + 0.5 + ROUNDING_EPSILON)


@dataclass(frozen=True, eq=False)
class ScoreResult:
    """The scores of n leads under one compiled rule set (R rules, k event rules).

    - `scores` int64 (n,): `raw_totals` rounded half away from zero, clamped to [floor, ceiling].
    - `raw_totals` float (n,): sum of contributions, after the model blend when it applies.
    - `bands` object (n,): band name or None; `qualifies` bool (n,): that band's flag.
    - `personas` object (n,): persona name or None.
    - `contributions` float (n, R): points each rule gave each lead (0 when it does not apply).
    - `capped` bool (n, R): True where an event rule's cap changed its contribution.
    - `counts` / `decayed` (n, k): the behaviour aggregates used, passed through.
    - `model_effect` float (n,): blended total minus rule total (0 where no blend applied).
    - `model_applied` bool (n,): the blend applied (weight > 0 and a probability was given).
    - `model_probability` float (n,): the probabilities given (NaN where none).
    - `group_totals` float (n, G): per group, its rules' contributions summed and clamped to
      the group's [floor, cap]; `group_scores` int64 (n, G) those rounded half away from
      zero; `group_bands` object (n, G) the band of each group score (None below every band).
    - `grades` object (n,): the two grid groups' band names concatenated (None without a grid
      or when either band is None).
    """

    scores: np.ndarray
    raw_totals: np.ndarray
    bands: np.ndarray
    personas: np.ndarray
    qualifies: np.ndarray
    contributions: np.ndarray
    capped: np.ndarray
    counts: np.ndarray
    decayed: np.ndarray
    compiled: CompiledRuleSet
    model_effect: np.ndarray
    model_applied: np.ndarray
    model_probability: np.ndarray
    group_totals: np.ndarray | None = None
    group_scores: np.ndarray | None = None
    group_bands: np.ndarray | None = None
    grades: np.ndarray | None = None

    @property
    def group_names(self) -> tuple[str, ...]:
        """Group names in document order (column g of the group arrays is group g)."""
        return tuple(g.name for g in self.compiled.spec.groups)

    def group_scores_of(self, i: int) -> dict[str, int]:
        """Lead i's group scores as `{group: score}` (empty without groups)."""
        if self.group_scores is None:
            return {}
        return dict(zip(self.group_names, self.group_scores[i].tolist(), strict=True))

    @property
    def n(self) -> int:
        """Number of leads scored."""
        return int(self.scores.shape[0])


class LeadTable:
    """Lead columns, each prepared (normalised, factorised) on first use and kept.

    `score_leads` builds one per call from a mapping; a caller scoring the same leads with
    several rule sets (the impact preview) builds one and passes it to every call, so each
    column is prepared once, not once per rule set."""

    def __init__(self, columns: Mapping[str, np.ndarray], n: int) -> None:
        for name, values in columns.items():
            # Checked up front, also for columns no rule reads: a short column means the
            # caller's arrays are misaligned, and every score would be suspect.
            if np.shape(values) != (n,):
                raise ValueError(f"column {name!r} has shape {np.shape(values)}, expected ({n},)")
        self._columns = columns
        self.n = n
        self._views: dict[str, ColumnView] = {}

    def view(self, field: str) -> ColumnView:
        if field not in self._views:
            if field == EMAIL_DOMAIN_TYPE_FIELD:
                self._views[field] = self.view("email").email_domain_types()
            else:
                self._views[field] = ColumnView(self._columns.get(field), self.n)
        return self._views[field]

    def holds(self, condition: Condition | AttributeRule) -> np.ndarray:
        return evaluate(self.view(condition.field), condition.op, condition.value)


def assign_personas(compiled: CompiledRuleSet, columns: LeadTable, n: int) -> np.ndarray:
    """Index into `spec.personas` of each lead's persona, -1 for none (first match wins)."""
    persona_index = np.full(n, -1, dtype=np.intp)
    for p in compiled.persona_order:
        unassigned = persona_index == -1
        if not unassigned.any():
            break
        matches = unassigned
        for condition in compiled.spec.personas[p].match:
            matches = matches & columns.holds(condition)
        persona_index[matches] = p
    return persona_index


@gc_paused()
def score_leads(
    compiled: CompiledRuleSet,
    columns: Mapping[str, np.ndarray] | LeadTable,
    behaviour: BehaviourAggregates,
    model_probability: np.ndarray | None = None,
) -> ScoreResult:
    """Score n leads (n = `len(behaviour.days_since_activity)`).

    `columns` maps lead field names (see `compiled.fields`) to arrays of length n; a field that
    is absent reads as missing for every lead; a `LeadTable` of n leads may be given instead.
    `behaviour` holds the aggregates for `compiled.event_rules` (see `BehaviourAggregates`).

    Contributions: attribute rule -> `points` when its predicate holds; event rule ->
    `points * decayed`, clipped to [-|cap|, |cap|] when it has a cap; inactivity rule ->
    `points` when `days_since_activity >= days`. A rule with a persona contributes only to
    leads of that persona. The total is their sum (in rule order). When the rule set's
    `model_weight` w > 0 and `model_probability` p (values in [0, 1], NaN = no prediction) is
    given, `total = (1 - w) * total + w * 100 * p` for leads with a prediction. Then the score
    is the total rounded half away from zero (see ROUNDING_EPSILON) and clamped to
    [floor, ceiling]; the band is the highest `min_score` not above the score among the bands of
    the lead's persona, or among the bands without a persona when the persona has none.

    Raises ValueError when array shapes disagree or a probability is outside [0, 1].
    """
    spec = compiled.spec
    n = behaviour.n
    k = len(compiled.event_rules)
    if behaviour.counts.shape[1] != k:
        raise ValueError(
            f"behaviour has {behaviour.counts.shape[1]} event columns, the rule set {k}"
        )
    if isinstance(columns, LeadTable):
        if columns.n != n:
            raise ValueError(f"the lead table has {columns.n} leads, the behaviour {n}")
        cols = columns
    else:
        cols = LeadTable(columns, n)
    persona_index = assign_personas(compiled, cols, n)

    n_rules = len(compiled.rules)
    # Column-major: every rule writes one contiguous column.
    contributions = np.zeros((n, n_rules), dtype=np.float64, order="F")
    capped = np.zeros((n, n_rules), dtype=bool, order="F")
    event_column = {rule_index: j for j, (rule_index, _) in enumerate(compiled.event_rules)}
    for r, rule in enumerate(compiled.rules):
        applies = (
            None if compiled.rule_persona[r] == -1 else persona_index == compiled.rule_persona[r]
        )
        if isinstance(rule, AttributeRule):
            fired = cols.holds(rule)
            value = np.where(fired, float(rule.points), 0.0)
        elif isinstance(rule, EventRule):
            value = rule.points * behaviour.decayed[:, event_column[r]]
            if rule.cap is not None:
                limit = abs(rule.cap)
                capped[:, r] = np.abs(value) > limit
                value = np.clip(value, -limit, limit)
        else:
            # NaN (unknown) days compare False: an unknown activity date never triggers.
            value = np.where(behaviour.days_since_activity >= rule.days, float(rule.points), 0.0)
        if applies is not None:
            value = np.where(applies, value, 0.0)
            capped[:, r] &= applies
        contributions[:, r] = value

    # Summed left to right in rule order, so the result does not depend on NumPy's pairwise
    # summation and equals a plain loop over the rules. Grouped rules sum into their group;
    # each group's clamped sum is then added, in group order, after the ungrouped rules.
    n_groups = len(spec.groups)
    totals = np.zeros(n, dtype=np.float64)
    group_totals = np.zeros((n, n_groups), dtype=np.float64, order="F")
    for r in range(n_rules):
        g = compiled.rule_group[r] if compiled.rule_group else -1
        if g == -1:
            totals += contributions[:, r]
        else:
            group_totals[:, g] += contributions[:, r]
    group_scores = group_bands = grades = None
    if n_groups:
        group_bands = np.full((n, n_groups), None, dtype=object)
        for g, group in enumerate(spec.groups):
            low = -np.inf if group.floor is None else group.floor
            high = np.inf if group.cap is None else group.cap
            group_totals[:, g] = np.clip(group_totals[:, g], low, high)
            totals += group_totals[:, g]
        group_scores = round_half_away_from_zero(group_totals).astype(np.int64)
        for g in range(n_groups):
            group_bands[:, g] = band_of(compiled.group_band_tables[g], group_scores[:, g])
        grades = np.full(n, None, dtype=object)
        if compiled.grid is not None:
            first, second = group_bands[:, compiled.grid[0]], group_bands[:, compiled.grid[1]]
            graded = (first != None) & (second != None)  # noqa: E711 (elementwise)
            # Object arrays add elementwise with Python's +: string concatenation.
            grades[graded] = first[graded] + second[graded]

    model_effect = np.zeros(n, dtype=np.float64)
    model_applied = np.zeros(n, dtype=bool)
    probability = np.full(n, np.nan)
    if model_probability is not None:
        probability = np.asarray(model_probability, dtype=np.float64)
        if probability.shape != (n,):
            raise ValueError(f"model_probability must have shape ({n},)")
        given = ~np.isnan(probability)
        if ((probability[given] < 0) | (probability[given] > 1)).any():
            raise ValueError("model_probability must lie in [0, 1] (or be NaN)")
        if spec.model_weight > 0:
            w = spec.model_weight
            blended = (1 - w) * totals + w * 100 * probability
            model_applied = given
            model_effect = np.where(given, blended - totals, 0.0)
            totals = np.where(given, blended, totals)

    scores = np.clip(round_half_away_from_zero(totals), spec.floor, spec.ceiling).astype(np.int64)
    bands, qualifies = _assign_bands(compiled, persona_index, scores)
    names = np.array([None, *compiled.persona_names], dtype=object)
    return ScoreResult(
        scores=scores,
        raw_totals=totals,
        bands=bands,
        personas=names[persona_index + 1],
        qualifies=qualifies,
        contributions=contributions,
        capped=capped,
        counts=behaviour.counts,
        decayed=behaviour.decayed,
        compiled=compiled,
        model_effect=model_effect,
        model_applied=model_applied,
        model_probability=probability,
        group_totals=group_totals if n_groups else None,
        group_scores=group_scores,
        group_bands=group_bands,
        grades=grades,
    )


def _assign_bands(
    compiled: CompiledRuleSet, persona_index: np.ndarray, scores: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    n = scores.shape[0]
    bands = np.full(n, None, dtype=object)
    qualifies = np.zeros(n, dtype=bool)
    # scope_of[p + 1]: the band scope used by leads of persona p (-1: no persona).
    personas = compiled.spec.personas
    scopes = [None] + [p.name if p.name in compiled.band_tables else None for p in personas]
    scope_ids = {scope: i for i, scope in enumerate(dict.fromkeys(scopes))}
    scope_of = np.array([scope_ids[s] for s in scopes], dtype=np.intp)[persona_index + 1]
    for scope, scope_id in scope_ids.items():
        table = compiled.band_tables.get(scope)
        if table is None:
            continue
        leads = np.flatnonzero(scope_of == scope_id)
        position = np.searchsorted(table.min_scores, scores[leads], side="right") - 1
        banded = position >= 0
        leads, position = leads[banded], position[banded]
        bands[leads] = table.names[position]
        qualifies[leads] = table.qualifies[position]
    return bands, qualifies
