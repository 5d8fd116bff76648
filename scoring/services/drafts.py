"""Writes of the rule editor: one rule, persona or band of a draft at a time.

Every edit is checked on the whole draft: the draft's document with the edit applied goes
through `parse_ruleset`, and an edit that would add a problem is refused (`DraftEditInvalid`,
carrying the engine's issues) with nothing written. Rows are saved one by one, so
django-simple-history records each change with its user (the request's, through its
middleware) and the old and new values."""

from __future__ import annotations

import copy
import logging
from typing import Any

from django.db import transaction

from scoring.engine import (
    AttributeRule,
    EventRule,
    RuleSetInvalid,
    ValidationIssue,
    parse_ruleset,
    where_value_document,
)
from scoring.models import Band, Persona, Rule, RuleSet
from scoring.services.rulesets import RuleSetNotEditable, ruleset_copy, ruleset_document
from scoring.services.rulesets import ruleset_import as _import

logger = logging.getLogger(__name__)

SECTIONS = ("rules", "personas", "bands")
EMPTY_DOCUMENT = {"name": "New rule set", "rules": []}


class DraftEditInvalid(Exception):
    """The edit would make the draft invalid; `issues` are the problems it would add, with the
    JSON paths of the edited document (the edited item is `$.<section>[index]`)."""

    def __init__(self, issues: list[ValidationIssue], index: int | None = None) -> None:
        self.issues = issues
        self.index = index
        super().__init__("; ".join(f"{i.path}: {i.message}" for i in issues))


def _issues(document: dict[str, Any]) -> list[ValidationIssue]:
    try:
        parse_ruleset(document)
    except RuleSetInvalid as exc:
        return exc.errors
    return []


def _editable(rule_set: RuleSet) -> None:
    if not rule_set.is_editable:
        raise RuleSetNotEditable(f"{rule_set} is {rule_set.status}; copy it to a draft first.")


def _rows(rule_set: RuleSet, section: str) -> list[Any]:
    if section not in SECTIONS:
        raise ValueError(f"unknown section {section!r}")
    return list(getattr(rule_set, section).all())


def _check(before: dict[str, Any], after: dict[str, Any], index: int | None) -> None:
    """Refuse `after` when it has problems that `before` did not (problems already there are
    not this edit's fault; they stay visible on the page)."""
    old = {(i.path, i.message) for i in _issues(before)}
    new = [i for i in _issues(after) if (i.path, i.message) not in old]
    if new:
        raise DraftEditInvalid(new, index)


# ---------------------------------------------------------------------------------------------
# Drafts


def draft_create(*, user: Any = None, source: RuleSet | None = None) -> RuleSet:
    """A new draft: a copy of `source` (any version), or an empty rule set."""
    if source is not None:
        return ruleset_copy(source, user=user)
    return _import(EMPTY_DOCUMENT, user=user)


def draft_discard(rule_set: RuleSet) -> None:
    """Delete a draft (its audit trail stays in the history tables)."""
    _editable(rule_set)
    with transaction.atomic():
        for section in SECTIONS:
            for row in _rows(rule_set, section):
                row.delete()
        rule_set.delete()
    logger.info("ruleset.draft_discarded ruleset=%s", rule_set.pk)


@transaction.atomic
def draft_settings_save(
    rule_set: RuleSet, *, name: str, floor: int, ceiling: int, model_weight: float
) -> RuleSet:
    """Rename a draft or change its score range and model weight."""
    _editable(rule_set)
    before = ruleset_document(rule_set)
    after = {**before, "name": name, "floor": floor, "ceiling": ceiling}
    after["model_weight"] = model_weight
    _check(before, after, None)
    rule_set.name, rule_set.floor, rule_set.ceiling = name, floor, ceiling
    rule_set.model_weight = model_weight
    rule_set.save()
    return rule_set


@transaction.atomic
def draft_groups_save(rule_set: RuleSet, extension: dict[str, Any]) -> RuleSet:
    """Replace a draft's `groups`, `grid` and `account` (absent keys clear them). Raises
    `DraftEditInvalid` with the engine's issues (e.g. a rule naming a group that no longer
    exists) and changes nothing then."""
    _editable(rule_set)
    before = ruleset_document(rule_set)
    after = {k: v for k, v in before.items() if k not in ("groups", "grid", "account")}
    after.update({k: v for k, v in extension.items() if v not in (None, [])})
    _check(before, after, None)
    rule_set.groups = extension.get("groups") or []
    rule_set.grid = extension.get("grid")
    rule_set.account = extension.get("account")
    rule_set.save(update_fields=["groups", "grid", "account"])
    return rule_set


# ---------------------------------------------------------------------------------------------
# Items


@transaction.atomic
def draft_item_save(
    rule_set: RuleSet, section: str, index: int | None, item: dict[str, Any]
) -> int:
    """Replace item `index` of `section` (rules, personas, bands) with the document `item`,
    or append it when `index` is None. Returns the item's index. Renaming a persona renames
    it in the draft's rules and bands too. Raises DraftEditInvalid, RuleSetNotEditable,
    IndexError."""
    _editable(rule_set)
    rows = _rows(rule_set, section)
    if index is not None and not 0 <= index < len(rows):
        raise IndexError(f"{section}[{index}] does not exist")
    before = ruleset_document(rule_set)
    after = copy.deepcopy(before)
    items = after.setdefault(section, [])
    renamed: tuple[str, str] | None = None
    if index is None:
        items.append(item)
        position = len(items) - 1
    else:
        if section == "personas" and item.get("name") and item["name"] != items[index]["name"]:
            renamed = (items[index]["name"], item["name"])
            for other in after.get("rules", []) + after.get("bands", []):
                if other.get("persona") == renamed[0]:
                    other["persona"] = renamed[1]
        items[index] = item
        position = index
    _check(before, after, position)
    spec = parse_ruleset(after)
    if section == "rules":
        row = rows[index] if index is not None else Rule(rule_set=rule_set, position=len(rows))
        _apply_rule(row, spec.rules[position])
    elif section == "personas":
        persona = spec.personas[position]
        row = rows[index] if index is not None else Persona(rule_set=rule_set)
        row.name, row.priority = persona.name, persona.priority
        row.match = after["personas"][position]["match"]
    else:
        band = spec.bands[position]
        row = rows[index] if index is not None else Band(rule_set=rule_set)
        row.name, row.min_score, row.qualifies = band.name, band.min_score, band.qualifies
        row.persona = band.persona or ""
    row.save()
    if renamed:
        for related in (rule_set.rules, rule_set.bands):
            for other in related.filter(persona=renamed[0]):
                other.persona = renamed[1]
                other.save()
    logger.info("ruleset.item_saved ruleset=%s section=%s index=%s", rule_set.pk, section, position)
    if section == "rules":
        return position
    # Personas and bands are listed in their own order (priority, min score): find the row.
    return [r.pk for r in _rows(rule_set, section)].index(row.pk)


@transaction.atomic
def draft_item_delete(rule_set: RuleSet, section: str, index: int) -> None:
    """Delete item `index`; refused (DraftEditInvalid) when something still needs it, e.g. a
    persona that rules or bands name."""
    _editable(rule_set)
    rows = _rows(rule_set, section)
    if not 0 <= index < len(rows):
        raise IndexError(f"{section}[{index}] does not exist")
    before = ruleset_document(rule_set)
    after = copy.deepcopy(before)
    del after[section][index]
    old = len(_issues(before))
    new = _issues(after)
    if len(new) > old:
        raise DraftEditInvalid(new, index)
    rows[index].delete()
    if section == "rules":
        _renumber(rule_set)


@transaction.atomic
def draft_rule_move(rule_set: RuleSet, index: int, offset: int) -> int:
    """Move rule `index` up (offset -1) or down (+1); returns its new index. Rule order is the
    order contributions are summed and listed in breakdowns."""
    _editable(rule_set)
    rows = _rows(rule_set, "rules")
    if not 0 <= index < len(rows):
        raise IndexError(f"rules[{index}] does not exist")
    target = min(max(index + offset, 0), len(rows) - 1)
    rows.insert(target, rows.pop(index))
    _renumber(rule_set, rows)
    return target


def _renumber(rule_set: RuleSet, rows: list[Rule] | None = None) -> None:
    for position, row in enumerate(rows if rows is not None else _rows(rule_set, "rules")):
        if row.position != position:
            row.position = position
            row.save(update_fields=["position"])


def _apply_rule(row: Rule, rule: Any) -> None:
    """Copy a parsed rule onto its row, clearing the columns its kind does not use."""
    row.kind = rule.kind
    row.points = rule.points
    row.persona = rule.persona or ""
    row.name = rule.name or ""
    row.group = rule.group or ""
    row.field, row.op, row.value = "", "", None
    row.event_type, row.where = "", {}
    row.window_days = row.half_life_days = row.cap = row.days = None
    if isinstance(rule, AttributeRule):
        row.field, row.op = rule.field, rule.op
        row.value = list(rule.value) if isinstance(rule.value, tuple) else rule.value
    elif isinstance(rule, EventRule):
        row.event_type = rule.event_type
        row.where = {key: where_value_document(value) for key, value in rule.where}
        row.window_days, row.half_life_days, row.cap = (
            rule.window_days,
            rule.half_life_days,
            rule.cap,
        )
    else:
        row.days = rule.days
