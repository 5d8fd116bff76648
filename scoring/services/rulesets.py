"""Writes on rule sets: import, export, copy to a draft, publish (a rollback publishes a copy
of an archived version). Edits of a draft's rows live in `scoring.services.drafts`.

A rule set is stored as rows (RuleSet, Persona, Band, Rule) so every edit is audited by
django-simple-history; the engine's `RuleSetSpec` is the one validated form, and every path
that stores or publishes a rule set goes through `parse_ruleset`, so the database never holds
a rule set the engine would refuse."""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction
from django.db.models import Max
from django.utils import timezone
from simple_history.utils import bulk_create_with_history

from scoring.engine import (
    AttributeRule,
    EventRule,
    InactivityRule,
    RuleSetSpec,
    parse_ruleset,
    ruleset_to_document,
    where_value_document,
)
from scoring.models import Band, Persona, RescoreRun, Rule, RuleSet

logger = logging.getLogger(__name__)


class RuleSetNotEditable(Exception):
    """Published and archived rule sets are immutable; copy them into a draft instead."""


def ruleset_document(rule_set: RuleSet) -> dict[str, Any]:
    """The rule set as the JSON document of DESIGN.md §4, built from its rows (not validated:
    a draft may be half-edited; `ruleset_to_spec` validates)."""
    document: dict[str, Any] = {
        "name": rule_set.name,
        "floor": _plain_number(rule_set.floor),
        "ceiling": _plain_number(rule_set.ceiling),
        "personas": [
            {"name": p.name, "priority": p.priority, "match": p.match}
            for p in rule_set.personas.all()
        ],
        "bands": [_band_document(b) for b in rule_set.bands.all()],
        "rules": [_rule_document(r) for r in rule_set.rules.all()],
    }
    if rule_set.model_weight:
        document["model_weight"] = rule_set.model_weight
    if rule_set.groups:
        document["groups"] = rule_set.groups
    if rule_set.grid is not None:
        document["grid"] = rule_set.grid
    if rule_set.account is not None:
        document["account"] = rule_set.account
    return document


def ruleset_to_spec(rule_set: RuleSet) -> RuleSetSpec:
    """The engine's validated form of a stored rule set. Raises `RuleSetInvalid`."""
    return parse_ruleset(ruleset_document(rule_set))


def ruleset_export(rule_set: RuleSet) -> dict[str, Any]:
    """The canonical export: validated and normalised by the engine, so import(export(x))
    gives back the same rule set."""
    return ruleset_to_document(ruleset_to_spec(rule_set))


@transaction.atomic
def ruleset_import(
    document: Any, *, user: Any = None, publish: bool = False, based_on: RuleSet | None = None
) -> RuleSet:
    """Store a rule-set document as a new draft (and publish it when asked).

    Raises `RuleSetInvalid` (with the JSON path and reason of every error) before anything is
    written."""
    spec = parse_ruleset(document)
    extension = ruleset_to_document(spec)
    rule_set = RuleSet.objects.create(
        name=spec.name,
        floor=spec.floor,
        ceiling=spec.ceiling,
        model_weight=spec.model_weight,
        groups=extension.get("groups", []),
        grid=extension.get("grid"),
        account=extension.get("account"),
        created_by=user if _is_user(user) else None,
        based_on=based_on,
    )
    _write_rows(rule_set, spec, user)
    logger.info("ruleset.imported ruleset=%s rules=%s", rule_set.pk, len(spec.rules))
    if publish:
        ruleset_publish(rule_set, user=user)
    return rule_set


def ruleset_copy(rule_set: RuleSet, *, user: Any = None) -> RuleSet:
    """A new draft with the same content, e.g. to edit the live rule set or roll back."""
    document = ruleset_document(rule_set)
    return ruleset_import(document, user=user, based_on=rule_set)


def ruleset_publish(
    rule_set: RuleSet,
    *,
    user: Any = None,
    rescore: bool = True,
    name: str = "",
    note: str = "",
) -> RuleSet:
    """Make `rule_set` the live champion with the next version number, under `name` (when
    given) with `note` as its change note.

    Publishing a draft publishes it in place; publishing an archived version (rollback)
    publishes a fresh copy of it, because published versions are immutable (its note, unless
    given, says which version it rolls back to). The previous champion is archived, and its
    bulk run, if one is still going, is superseded. Unless `rescore` is False, the bulk rescore
    run is created in the same transaction (so a crash or a broker outage cannot lose it) and
    its chunks are sent after the commit.

    Idempotent: publishing a draft that a concurrent call has just published returns that
    version (one version, one run). Raises `RuleSetInvalid` when the draft does not validate."""
    if rule_set.status != RuleSet.Status.DRAFT:
        note = note or f"Rollback to v{rule_set.version}"
        rule_set = ruleset_copy(rule_set, user=user)
    if name.strip():
        rule_set.name = name.strip()[:200]
    rule_set.change_note = note.strip()
    ruleset_to_spec(rule_set)  # refuses an invalid draft before anything changes
    from scoring.services.rescore import rescore_all, runs_supersede

    with transaction.atomic():
        # The draft's row first: a second publish of it waits here, then finds it published.
        current = RuleSet.objects.select_for_update().get(pk=rule_set.pk)
        if current.status != RuleSet.Status.DRAFT:
            return current
        # Serialise publishes: two at once must not both take the same version number.
        locked = list(RuleSet.objects.select_for_update().filter(status=RuleSet.Status.PUBLISHED))
        for previous in locked:
            previous.status = RuleSet.Status.ARCHIVED
            previous.save(update_fields=["status"])
        latest = RuleSet.objects.aggregate(v=Max("version"))["v"] or 0
        rule_set.status = RuleSet.Status.PUBLISHED
        rule_set.version = latest + 1
        rule_set.published_at = timezone.now()
        rule_set.published_by = user if _is_user(user) else None
        rule_set.save()
        logger.info("ruleset.published ruleset=%s version=%s", rule_set.pk, rule_set.version)
        runs_supersede(RescoreRun.objects.exclude(rule_set=rule_set))
        if rescore:
            rescore_all(rule_set=rule_set, user=user, inline=False)
    return rule_set


def ruleset_freeze_challenger(document: Any, *, user: Any = None) -> RuleSet:
    """Store a rule-set document as an experiment's challenger: validated as an import is,
    numbered as the next version (scores and reports name it), immutable, and never live.
    Raises `RuleSetInvalid` before anything is written."""
    with transaction.atomic():
        rule_set = ruleset_import(document, user=user)
        # The same lock as a publish, so the two never take the same version number.
        list(RuleSet.objects.select_for_update().filter(status=RuleSet.Status.PUBLISHED))
        rule_set.version = (RuleSet.objects.aggregate(v=Max("version"))["v"] or 0) + 1
        rule_set.status = RuleSet.Status.CHALLENGER
        rule_set.save(update_fields=["version", "status"])
    logger.info("ruleset.frozen ruleset=%s version=%s", rule_set.pk, rule_set.version)
    return rule_set


def _write_rows(rule_set: RuleSet, spec: RuleSetSpec, user: Any) -> None:
    default_user = user if _is_user(user) else None
    personas = [
        Persona(rule_set=rule_set, name=p.name, priority=p.priority, match=_conditions(p.match))
        for p in spec.personas
    ]
    bands = [
        Band(
            rule_set=rule_set,
            name=b.name,
            min_score=b.min_score,
            qualifies=b.qualifies,
            persona=b.persona or "",
        )
        for b in spec.bands
    ]
    rules = [_rule_row(rule_set, position, rule) for position, rule in enumerate(spec.rules)]
    # The bulk helpers write the audit rows too, so nothing escapes the history.
    bulk_create_with_history(personas, Persona, default_user=default_user)
    bulk_create_with_history(bands, Band, default_user=default_user)
    bulk_create_with_history(rules, Rule, default_user=default_user)


def _rule_row(rule_set: RuleSet, position: int, rule: Any) -> Rule:
    common = {
        "rule_set": rule_set,
        "position": position,
        "points": rule.points,
        "persona": rule.persona or "",
        "name": rule.name or "",
        "group": rule.group or "",
    }
    if isinstance(rule, AttributeRule):
        return Rule(kind="attribute", field=rule.field, op=rule.op, value=rule.value, **common)
    if isinstance(rule, EventRule):
        return Rule(
            kind="event",
            event_type=rule.event_type,
            where={key: where_value_document(value) for key, value in rule.where},
            window_days=rule.window_days,
            half_life_days=rule.half_life_days,
            cap=rule.cap,
            **common,
        )
    if isinstance(rule, InactivityRule):
        return Rule(kind="inactivity", days=rule.days, **common)
    raise TypeError(f"unknown rule type {type(rule).__name__}")


def _rule_document(rule: Rule) -> dict[str, Any]:
    document: dict[str, Any] = {"kind": rule.kind}
    if rule.kind == "attribute":
        document.update(field=rule.field, op=rule.op)
        if rule.op not in ("is_set", "is_not_set"):
            document["value"] = rule.value
    elif rule.kind == "event":
        document["event_type"] = rule.event_type
        if rule.where:
            document["where"] = rule.where
        document["window_days"] = _plain_number(rule.window_days)
        if rule.half_life_days is not None:
            document["half_life_days"] = _plain_number(rule.half_life_days)
        if rule.cap is not None:
            document["cap"] = _plain_number(rule.cap)
    else:
        document["days"] = _plain_number(rule.days)
    document["points"] = _plain_number(rule.points)
    if rule.persona:
        document["persona"] = rule.persona
    if rule.group:
        document["group"] = rule.group
    if rule.name:
        document["name"] = rule.name
    return document


def _band_document(band: Band) -> dict[str, Any]:
    document: dict[str, Any] = {"name": band.name, "min_score": _plain_number(band.min_score)}
    if band.qualifies:
        document["qualifies"] = True
    if band.persona:
        document["persona"] = band.persona
    return document


def _conditions(conditions: Any) -> list[dict[str, Any]]:
    result = []
    for condition in conditions:
        item = {"field": condition.field, "op": condition.op}
        if condition.op not in ("is_set", "is_not_set"):
            item["value"] = condition.value
        result.append(item)
    return result


def _plain_number(value: float | None) -> float | int | None:
    """Whole floats as ints, so exported documents read like the ones people write."""
    if value is None:
        return None
    return int(value) if float(value).is_integer() else value


def _is_user(user: Any) -> bool:
    return user is not None and getattr(user, "is_authenticated", False)
