"""Reads for the rule pages: picker options, rows ready to show, version diffs and the audit
trail. Plain data out; the views only arrange it."""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from django.core.cache import cache
from django.db import connection

from leadscoring.db import is_postgres
from scoring.engine import (
    RuleSetInvalid,
    ValidationIssue,
    issue_location,
    parse_ruleset,
    rule_label,
)
from scoring.models import Band, Event, Persona, RescoreRun, Rule, RuleSet
from scoring.rule_inputs import LEAD_FIELDS
from scoring.services.rulesets import ruleset_document

PICKER_CACHE_SECONDS = 60
PICKER_LIMIT = 300
ATTRIBUTE_SAMPLE = 20000
AUDIT_LIMIT = 300
AUDIT_IGNORED_FIELDS = ("history_change_reason",)


def picker_options() -> dict[str, list[str]]:
    """The fields a rule may test (lead columns, `email_domain_type`, and `attributes.<key>`
    for the custom attribute keys found in the newest ATTRIBUTE_SAMPLE leads) and the event
    types present in the data. Cached for a minute: the lists are suggestions, not rules."""
    cached = cache.get("rules.picker_options")
    if cached is not None:
        return cached
    options = {
        "fields": [*LEAD_FIELDS, "email_domain_type"]
        + [f"attributes.{key}" for key in _attribute_keys()],
        "event_types": _event_types(),
    }
    cache.set("rules.picker_options", options, PICKER_CACHE_SECONDS)
    return options


def _attribute_keys() -> list[str]:
    if is_postgres():
        sql = (
            "SELECT DISTINCT key FROM (SELECT jsonb_object_keys(attributes) AS key FROM "
            "(SELECT attributes FROM scoring_lead WHERE jsonb_typeof(attributes) = 'object' "
            "ORDER BY id DESC LIMIT %s) sample) keys ORDER BY key LIMIT %s"
        )
    else:
        sql = (
            "SELECT DISTINCT j.key FROM (SELECT attributes FROM scoring_lead "
            "WHERE json_type(attributes) = 'object' ORDER BY id DESC LIMIT %s) sample, "
            "json_each(sample.attributes) j ORDER BY 1 LIMIT %s"
        )
    with connection.cursor() as cursor:
        cursor.execute(sql, [ATTRIBUTE_SAMPLE, PICKER_LIMIT])
        return [row[0] for row in cursor.fetchall()]


def _event_types() -> list[str]:
    if is_postgres():
        # A loose index scan over (event_type, occurred_at): one index probe per distinct
        # type instead of reading ten million index entries.
        with connection.cursor() as cursor:
            cursor.execute(
                "WITH RECURSIVE types AS ("
                " (SELECT event_type FROM scoring_event ORDER BY event_type LIMIT 1)"
                " UNION ALL"
                " SELECT (SELECT e.event_type FROM scoring_event e"
                "  WHERE e.event_type > t.event_type ORDER BY e.event_type LIMIT 1)"
                " FROM types t WHERE t.event_type IS NOT NULL"
                ") SELECT event_type FROM types WHERE event_type IS NOT NULL LIMIT %s",
                [PICKER_LIMIT],
            )
            return [row[0] for row in cursor.fetchall()]
    return list(
        Event.objects.values_list("event_type", flat=True)
        .distinct()
        .order_by("event_type")[:PICKER_LIMIT]
    )


# ---------------------------------------------------------------------------------------------
# Rows


def rule_set_issues(rule_set: RuleSet) -> list[ValidationIssue]:
    try:
        parse_ruleset(ruleset_document(rule_set))
    except RuleSetInvalid as exc:
        return exc.errors
    return []


def issues_by_item(issues: list[ValidationIssue]) -> dict[tuple[str, int], list[str]]:
    """(section, index) -> messages; issues outside the lists under ("", 0)."""
    grouped: dict[tuple[str, int], list[str]] = defaultdict(list)
    for issue in issues:
        location = issue_location(issue.path)
        if location is None:
            grouped["", 0].append(f"{issue.path}: {issue.message}")
            continue
        section, index, key, detail = location
        where = f"{key} {detail}".strip() if key != "__all__" else ""
        grouped[section, index].append(f"{where}: {issue.message}" if where else issue.message)
    return grouped


def rule_item_label(item: dict[str, Any]) -> str:
    """The engine's label of a rule document item ("employees >= 200"), or its JSON when the
    item does not validate on its own."""
    try:
        spec = parse_ruleset({"name": "x", "rules": [{**item, "persona": None, "name": None}]})
    except RuleSetInvalid:
        return json.dumps({k: v for k, v in item.items() if k not in ("points", "name")})
    return rule_label(spec.rules[0])


# ---------------------------------------------------------------------------------------------
# Versions


def versions() -> list[RuleSet]:
    """Published and archived rule sets, newest version first."""
    return list(
        RuleSet.objects.filter(version__isnull=False)
        .select_related("published_by", "created_by")
        .order_by("-version")
    )


def previous_version(rule_set: RuleSet) -> RuleSet | None:
    """What a rule set is compared with: the version before it, or for a draft the version it
    was copied from (else the live one)."""
    if rule_set.version is not None:
        return RuleSet.objects.filter(version__lt=rule_set.version).order_by("-version").first()
    if rule_set.based_on_id:
        return rule_set.based_on
    return RuleSet.objects.filter(status=RuleSet.Status.PUBLISHED).first()


def version_diff(old: RuleSet | None, new: RuleSet) -> dict[str, list[dict[str, Any]]]:
    """What changed from `old` to `new`: per section, items added, removed and changed (with
    each changed key's old and new value). Rules are matched by what they test (kind, field,
    operator and value, or event type and properties, and persona), so a rule whose points
    moved shows as changed, not as removed and added."""
    before = ruleset_document(old) if old is not None else {"rules": [], "personas": []}
    after = ruleset_document(new)
    result = {
        "settings": [
            {"key": key, "old": before.get(key), "new": after.get(key)}
            for key in ("name", "floor", "ceiling", "model_weight")
            if old is not None and before.get(key) != after.get(key)
        ],
        "rules": _diff_items(before.get("rules", []), after.get("rules", []), _rule_key),
        "personas": _diff_items(
            before.get("personas", []), after.get("personas", []), lambda p: p.get("name")
        ),
        "bands": _diff_items(
            before.get("bands", []),
            after.get("bands", []),
            lambda b: (b.get("persona") or "", b.get("name")),
        ),
    }
    return result


def _rule_key(item: dict[str, Any]) -> tuple:
    kind = item.get("kind")
    if kind == "attribute":
        test: tuple = (item.get("field"), item.get("op"), json.dumps(item.get("value")))
    elif kind == "event":
        test = (item.get("event_type"), json.dumps(item.get("where") or {}, sort_keys=True))
    else:
        test = ()
    return (kind, item.get("persona") or "", *test)


def _item_label(item: dict[str, Any]) -> str:
    label = rule_item_label(item) if "kind" in item else str(item.get("name"))
    if item.get("persona"):
        label += f" [persona {item['persona']}]"
    return label


def _diff_items(before: list[dict], after: list[dict], key) -> list[dict[str, Any]]:
    unmatched: dict[Any, list[dict]] = defaultdict(list)
    for item in before:
        unmatched[key(item)].append(item)
    changes = []
    for item in after:
        candidates = unmatched.get(key(item))
        if not candidates:
            changes.append({"change": "added", "label": _item_label(item), "fields": []})
            continue
        old = candidates.pop(0)
        fields = [
            {"key": k, "old": _show(old.get(k)), "new": _show(item.get(k))}
            for k in sorted(set(old) | set(item))
            if old.get(k) != item.get(k)
        ]
        if fields:
            changes.append({"change": "changed", "label": _item_label(item), "fields": fields})
    for leftovers in unmatched.values():
        for item in leftovers:
            changes.append({"change": "removed", "label": _item_label(item), "fields": []})
    return changes


def _show(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


# ---------------------------------------------------------------------------------------------
# Audit trail


def audit_trail(rule_set: RuleSet, limit: int = AUDIT_LIMIT) -> list[dict[str, Any]]:
    """Every recorded change to the rule set and its rules, personas and bands, newest first:
    when, who, what (created / changed / deleted) and, for changes, each field's old and new
    value (simple-history's `diff_against` of consecutive records of the same row)."""
    sources = [
        ("Rule set", RuleSet.history.filter(id=rule_set.pk)),
        ("Rule", Rule.history.filter(rule_set_id=rule_set.pk)),
        ("Persona", Persona.history.filter(rule_set_id=rule_set.pk)),
        ("Band", Band.history.filter(rule_set_id=rule_set.pk)),
    ]
    entries = []
    for kind, records in sources:
        previous: dict[int, Any] = {}
        for record in records.select_related("history_user").order_by("id", "history_date"):
            entry = {
                "when": record.history_date,
                "who": record.history_user.get_username() if record.history_user else "system",
                "object": f"{kind}: {_record_label(kind, record)}",
                "action": {"+": "created", "~": "changed", "-": "deleted"}[record.history_type],
                "changes": [],
            }
            before = previous.get(record.id)
            if record.history_type == "~" and before is not None:
                delta = record.diff_against(before, excluded_fields=AUDIT_IGNORED_FIELDS)
                entry["changes"] = [
                    {"field": c.field, "old": _show(c.old), "new": _show(c.new)}
                    for c in delta.changes
                ]
                if not entry["changes"]:
                    entry["action"] = "saved (no change)"
            previous[record.id] = record
            entries.append(entry)
    entries.sort(key=lambda e: e["when"], reverse=True)
    return entries[:limit]


def _record_label(kind: str, record: Any) -> str:
    if kind == "Rule":
        if record.kind == "attribute":
            text = f"{record.field} {record.op} {_show(record.value)}"
        elif record.kind == "event":
            text = record.event_type
        else:
            text = f"no activity for {record.days:g} d" if record.days else "inactivity"
        return f"{record.name} ({text})" if record.name else text
    if kind == "Band":
        return f"{record.name} ≥ {record.min_score:g}" + (
            f" [persona {record.persona}]" if record.persona else ""
        )
    return record.name


def latest_rescore(rule_set: RuleSet) -> RescoreRun | None:
    return rule_set.rescore_runs.order_by("-id").first()


def live_rule_set() -> RuleSet | None:
    return RuleSet.objects.filter(status=RuleSet.Status.PUBLISHED).first()


def bands_best_first(groups: list[dict[str, Any]], name: str) -> list[str]:
    """The band names of the group `name` in `groups` (a rule set's `groups` document), the
    highest `min_score` first; [] when there is no such group."""
    group = next((g for g in groups or [] if g.get("name") == name), {})
    bands = sorted(group.get("bands") or [], key=lambda b: b["min_score"], reverse=True)
    return [b["name"] for b in bands]


def grades_best_first(rule_set: RuleSet | None) -> list[str]:
    """Every grade of the rule set's grid, best first: by the first grid group's band, then
    the second's, each in band order (highest `min_score` first), so `A1, A2, B1, B2` for
    bands A > B and 1 > 2; [] without a grid. Band order, never the alphabet, says "best"."""
    if rule_set is None or not rule_set.grid:
        return []
    rows, columns = (bands_best_first(rule_set.groups, name) for name in rule_set.grid)
    return [row + column for row in rows for column in columns]


def groups_document(rule_set: RuleSet) -> dict[str, Any]:
    """The rule set's groups, grid and account roll-up as `{"groups", "grid", "account"}`,
    keys without a value left out."""
    return {
        key: value
        for key, value in (
            ("groups", rule_set.groups),
            ("grid", rule_set.grid),
            ("account", rule_set.account),
        )
        if value
    }


def groups_document_text(rule_set: RuleSet) -> str:
    """The rule set's groups, grid and account roll-up as the editor's JSON text ("" when it
    has none)."""
    extension = groups_document(rule_set)
    return json.dumps(extension, indent=2) if extension else ""


def groups_summary(rule_set: RuleSet) -> list[str]:
    """One line per group for the read-only view: "fit: cap 50, floor 0; bands A ≥ 40, ..."."""
    lines = []
    for group in rule_set.groups or []:
        if not isinstance(group, dict):
            continue
        bounds = [f"{k} {group[k]}" for k in ("cap", "floor") if group.get(k) is not None]
        bands = ", ".join(
            f"{b.get('name')} \N{GREATER-THAN OR EQUAL TO} {b.get('min_score')}"
            for b in group.get("bands") or []
            if isinstance(b, dict)
        )
        limits = ", ".join(bounds) or "no cap"
        lines.append(f"{group.get('name')}: {limits}; bands {bands or 'none'}")
    if rule_set.grid:
        times = " \N{MULTIPLICATION SIGN} "
        lines.append(f"grade = {times.join(rule_set.grid)}")
    return lines
