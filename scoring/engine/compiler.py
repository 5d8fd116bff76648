"""Compile a `RuleSetSpec` once into the lookup tables that scoring uses for every chunk."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .spec import (
    EMAIL_DOMAIN_TYPE_FIELD,
    AttributeRule,
    EventRule,
    Rule,
    RuleSetSpec,
    parse_ruleset,
    ruleset_to_document,
)


@dataclass(frozen=True, eq=False)
class BandTable:
    """The bands of one persona scope, sorted by `min_score` (distinct, ascending)."""

    min_scores: np.ndarray  # float64
    names: np.ndarray  # object
    qualifies: np.ndarray  # bool


@dataclass(frozen=True, eq=False)
class CompiledRuleSet:
    """A validated rule set in the form `score_leads` consumes.

    - `spec`: the rule set in normal form (as `parse_ruleset` returns it).
    - `rules`: `spec.rules`, in document order; contribution column r belongs to `rules[r]`.
    - `event_rules`: `(rule_index, EventRule)` for every event rule, in document order; column j
      of the behaviour aggregates belongs to `event_rules[j]`.
    - `fields`: the lead columns the caller must supply (attribute rules and persona match
      conditions; `email_domain_type` is derived from `email`, so `email` is listed instead).
    - `persona_order`: indices into `spec.personas` in the order they are tried.
    - `rule_persona`: per rule, the index of its persona in `spec.personas`, or -1 for all.
    - `band_tables`: per scope (None or a persona name that has bands of its own).
    - `rule_group`: per rule, the index of its group in `spec.groups`, or -1 for none.
    - `group_band_tables`: per group, its bands (an empty table when it has none).
    - `grid`: the indices of the two grid groups, or None.
    """

    spec: RuleSetSpec
    rules: tuple[Rule, ...]
    event_rules: tuple[tuple[int, EventRule], ...]
    fields: frozenset[str]
    persona_order: tuple[int, ...]
    rule_persona: tuple[int, ...]
    band_tables: dict[str | None, BandTable]
    rule_group: tuple[int, ...] = ()
    group_band_tables: tuple[BandTable, ...] = ()
    grid: tuple[int, int] | None = None

    @property
    def persona_names(self) -> tuple[str, ...]:
        """Persona names in document order."""
        return tuple(p.name for p in self.spec.personas)


def _column_for(field: str) -> str:
    return "email" if field == EMAIL_DOMAIN_TYPE_FIELD else field


def compile_ruleset(spec: RuleSetSpec) -> CompiledRuleSet:
    """Validate `spec` and build its scoring tables.

    A spec built in code (not through `parse_ruleset`) is validated the same way by a round trip
    through its document, so every scoring path meets the same checks. Raises `RuleSetInvalid`.
    """
    spec = parse_ruleset(ruleset_to_document(spec))
    persona_index = {p.name: i for i, p in enumerate(spec.personas)}
    # Ascending priority, ties in document order (sorted() is stable).
    persona_order = tuple(
        sorted(range(len(spec.personas)), key=lambda i: spec.personas[i].priority)
    )
    fields = {_column_for(c.field) for p in spec.personas for c in p.match}
    fields |= {_column_for(r.field) for r in spec.rules if isinstance(r, AttributeRule)}

    band_tables: dict[str | None, BandTable] = {}
    for scope in {b.persona for b in spec.bands}:
        bands = sorted((b for b in spec.bands if b.persona == scope), key=lambda b: b.min_score)
        band_tables[scope] = BandTable(
            min_scores=np.array([b.min_score for b in bands], dtype=np.float64),
            names=np.array([b.name for b in bands], dtype=object),
            qualifies=np.array([b.qualifies for b in bands], dtype=bool),
        )

    group_index = {g.name: i for i, g in enumerate(spec.groups)}
    group_band_tables = tuple(band_table(g.bands) for g in spec.groups)
    return CompiledRuleSet(
        spec=spec,
        rules=spec.rules,
        event_rules=tuple((i, r) for i, r in enumerate(spec.rules) if isinstance(r, EventRule)),
        fields=frozenset(fields),
        persona_order=persona_order,
        rule_persona=tuple(
            -1 if r.persona is None else persona_index[r.persona] for r in spec.rules
        ),
        band_tables=band_tables,
        rule_group=tuple(-1 if r.group is None else group_index[r.group] for r in spec.rules),
        group_band_tables=group_band_tables,
        grid=None if spec.grid is None else (group_index[spec.grid[0]], group_index[spec.grid[1]]),
    )


def band_table(bands) -> BandTable:
    """The table of group (or account) bands `{name, min_score}`, sorted by min_score."""
    ordered = sorted(bands, key=lambda b: b.min_score)
    return BandTable(
        min_scores=np.array([b.min_score for b in ordered], dtype=np.float64),
        names=np.array([b.name for b in ordered], dtype=object),
        qualifies=np.zeros(len(ordered), dtype=bool),
    )


def band_of(table: BandTable, scores: np.ndarray) -> np.ndarray:
    """Per score, the name of the band with the highest min_score not above it (None below
    every band): the band rule of DESIGN.md §4."""
    scores = np.asarray(scores, dtype=np.float64)
    names = np.full(scores.shape[0], None, dtype=object)
    position = np.searchsorted(table.min_scores, scores, side="right") - 1
    banded = position >= 0
    names[banded] = table.names[position[banded]]
    return names
