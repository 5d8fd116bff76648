"""Routing rules: the document (`{"rules": [...], "fallback": {...}}`), validated with every
problem's JSON path, and matched against leads in bulk. Pure Python + NumPy, like the rest of
the engine; which users exist and who is on duty is the service's business
(`scoring.services.routing`).

A rule's `when` is a list of conditions in the attribute-rule predicate language (DESIGN.md
§4, same operators and semantics, evaluated by `predicates.evaluate`), plus the fields `band`
and `persona`; all must hold. Rules are tried in order, the first match wins, and a lead that
matches none goes to the fallback team (when there is one).

The optional `nurture` object maps a band name to CRM actions for leads entering that band
(`hubspot_list_add` / `hubspot_list_remove` with `list_id`, `salesforce_campaign_add` with
`campaign_id`); it lives in the same versioned document, so one history covers both."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .columns import ColumnView
from .predicates import evaluate
from .spec import (
    EMAIL_DOMAIN_TYPE_FIELD,
    RuleSetInvalid,
    _Collector,
    _key_path,
    _parse_predicate,
)

ROUTING_METHODS = ("round_robin", "least_loaded")
SLA_ACTIONS = ("reassign", "escalate")
# Nurture actions per band (run by the relay in integrations.outbound.nurture) and the id each
# one needs.
NURTURE_ACTIONS = {
    "hubspot_list_add": "list_id",
    "hubspot_list_remove": "list_id",
    "salesforce_campaign_add": "campaign_id",
}
FALLBACK_RULE_NAME = "fallback"


@dataclass(frozen=True)
class RoutingRule:
    """One ordered rule: conditions -> a team of usernames, with how to pick among them."""

    name: str
    when: tuple[tuple[str, str, Any], ...]
    team: tuple[str, ...]
    method: str = "round_robin"
    daily_capacity: int | None = None
    on_sla_breach: str = "reassign"
    manager: str | None = None
    slack_webhook: str | None = None


@dataclass(frozen=True)
class NurtureAction:
    """One CRM action for leads entering a band: `action` of NURTURE_ACTIONS on `target` (a
    HubSpot list id or a Salesforce campaign id)."""

    action: str
    target: str


@dataclass(frozen=True)
class RoutingSpec:
    rules: tuple[RoutingRule, ...]
    fallback: RoutingRule | None
    # Band name -> the actions for a lead entering it.
    nurture: tuple[tuple[str, tuple[NurtureAction, ...]], ...] = ()

    def nurture_for(self, band: str) -> tuple[NurtureAction, ...]:
        return next((actions for name, actions in self.nurture if name == band), ())

    def rule_named(self, name: str) -> RoutingRule | None:
        if self.fallback is not None and name == self.fallback.name:
            return self.fallback
        return next((rule for rule in self.rules if rule.name == name), None)

    @property
    def usernames(self) -> frozenset[str]:
        """Every user the document names (teams and managers)."""
        names: set[str] = set()
        for rule in (*self.rules, *([self.fallback] if self.fallback else [])):
            names.update(rule.team)
            if rule.manager:
                names.add(rule.manager)
        return frozenset(names)


_RULE_KEYS = ("daily_capacity", "on_sla_breach", "manager", "slack_webhook", "method")


def parse_routing(document: object) -> RoutingSpec:
    """Validate a routing document; raises `RuleSetInvalid` listing every problem by path
    (`$.rules[0].when[1].op: must be one of ...`)."""
    c = _Collector()
    doc = c.object(document, "$", required=("rules",), optional=("fallback", "nurture"))
    rules: list[RoutingRule] = []
    fallback = None
    nurture: list[tuple[str, tuple[NurtureAction, ...]]] = []
    if doc is not None:
        raw_rules = doc.get("rules")
        if "rules" in doc and not isinstance(raw_rules, list):
            c.add("$.rules", "must be a list")
        names: set[str] = set()
        for index, raw in enumerate(raw_rules if isinstance(raw_rules, list) else []):
            path = f"$.rules[{index}]"
            rule = _parse_rule(c, raw, path, fallback=False)
            if rule is None:
                continue
            if rule.name in names or rule.name == FALLBACK_RULE_NAME:
                c.add(f"{path}.name", "must be unique (and not 'fallback')")
            names.add(rule.name)
            rules.append(rule)
        if doc.get("fallback") is not None:
            fallback = _parse_rule(c, doc["fallback"], "$.fallback", fallback=True)
        if doc.get("nurture") is not None:
            nurture = _parse_nurture(c, doc["nurture"])
    if c.issues:
        raise RuleSetInvalid(c.issues)
    return RoutingSpec(rules=tuple(rules), fallback=fallback, nurture=tuple(nurture))


def _parse_nurture(c: _Collector, value: object) -> list[tuple[str, tuple[NurtureAction, ...]]]:
    """`{"<band>": [{"action": "hubspot_list_add", "list_id": "12"}, ...], ...}`."""
    if not isinstance(value, Mapping):
        c.add("$.nurture", "must be an object of band name -> list of actions")
        return []
    parsed = []
    for band, actions in value.items():
        path = _key_path("$.nurture", str(band))
        if not isinstance(actions, list):
            c.add(path, "must be a list of actions")
            continue
        items = []
        for k, raw in enumerate(actions):
            apath = f"{path}[{k}]"
            kind = raw.get("action") if isinstance(raw, Mapping) else None
            if kind not in NURTURE_ACTIONS:
                c.add(f"{apath}.action", f"must be one of {', '.join(NURTURE_ACTIONS)}")
                continue
            id_key = NURTURE_ACTIONS[kind]
            obj = c.object(raw, apath, required=("action", id_key), optional=())
            target = c.text(obj, id_key, apath) if obj is not None else None
            if target is not None:
                items.append(NurtureAction(kind, target.strip()))
        parsed.append((str(band), tuple(items)))
    return parsed


def _parse_rule(c: _Collector, raw: object, path: str, *, fallback: bool) -> RoutingRule | None:
    required = ("team",) if fallback else ("name", "when", "team")
    before = len(c.issues)
    obj = c.object(raw, path, required=required, optional=_RULE_KEYS)
    if obj is None:
        return None
    name = FALLBACK_RULE_NAME if fallback else c.text(obj, "name", path)
    when: list[tuple[str, str, Any]] = []
    if not fallback and "when" in obj:
        if not isinstance(obj["when"], list):
            c.add(f"{path}.when", "must be a list of conditions")
        else:
            for k, cond in enumerate(obj["when"]):
                cpath = f"{path}.when[{k}]"
                cobj = c.object(cond, cpath, required=("field", "op"), optional=("value",))
                if cobj is not None:
                    parsed = _parse_predicate(c, cobj, cpath)
                    if parsed is not None:
                        when.append(parsed)
    team = obj.get("team")
    if "team" in obj and (
        not isinstance(team, list)
        or not team
        or not all(isinstance(u, str) and u.strip() for u in team)
    ):
        c.add(f"{path}.team", "must be a non-empty list of usernames")
    elif isinstance(team, list) and len(set(team)) != len(team):
        c.add(f"{path}.team", "names a user twice")
    method = obj.get("method", "round_robin")
    if method not in ROUTING_METHODS:
        c.add(f"{path}.method", f"must be one of {', '.join(ROUTING_METHODS)}")
    capacity = obj.get("daily_capacity")
    if capacity is not None and (
        isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1
    ):
        c.add(f"{path}.daily_capacity", "must be a whole number of at least 1")
    action = obj.get("on_sla_breach", "reassign")
    if action not in SLA_ACTIONS:
        c.add(f"{path}.on_sla_breach", f"must be one of {', '.join(SLA_ACTIONS)}")
    manager = c.optional_text(obj, "manager", path)
    if action == "escalate" and manager is None and len(c.issues) == before:
        c.add(f"{path}.manager", "is required when on_sla_breach is escalate")
    slack = c.optional_text(obj, "slack_webhook", path)
    if slack is not None and not slack.startswith(("https://", "http://")):
        c.add(f"{path}.slack_webhook", "must be an http(s) URL")
    if len(c.issues) > before or name is None:
        return None
    return RoutingRule(
        name=name,
        when=tuple(when),
        team=tuple(team),
        method=method,
        daily_capacity=capacity,
        on_sla_breach=action,
        manager=manager,
        slack_webhook=slack,
    )


def routing_to_document(spec: RoutingSpec) -> dict[str, Any]:
    """The document of a parsed spec (what `parse_routing` accepts back)."""

    def rule_doc(rule: RoutingRule, fallback: bool) -> dict[str, Any]:
        doc: dict[str, Any] = {} if fallback else {"name": rule.name}
        if not fallback:
            doc["when"] = [
                {"field": f, "op": o, **({} if v is None else {"value": _plain(v)})}
                for f, o, v in rule.when
            ]
        doc.update(team=list(rule.team), method=rule.method)
        if rule.daily_capacity is not None:
            doc["daily_capacity"] = rule.daily_capacity
        if not fallback or rule.on_sla_breach != "reassign":
            doc["on_sla_breach"] = rule.on_sla_breach
        for key in ("manager", "slack_webhook"):
            if getattr(rule, key):
                doc[key] = getattr(rule, key)
        return doc

    document: dict[str, Any] = {"rules": [rule_doc(r, False) for r in spec.rules]}
    if spec.fallback is not None:
        document["fallback"] = rule_doc(spec.fallback, True)
    if spec.nurture:
        document["nurture"] = {
            band: [{"action": a.action, NURTURE_ACTIONS[a.action]: a.target} for a in actions]
            for band, actions in spec.nurture
        }
    return document


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def match_rules(
    spec: RoutingSpec, columns: Mapping[str, Sequence[Any]], n: int
) -> list[str | None]:
    """For each of `n` leads, the name of the first rule whose conditions all hold (the
    fallback's name when none does, None when there is no fallback either). `columns` maps a
    field name (`country`, `attributes.plan`, `band`, `persona`, `email`...) to one value per
    lead; a field it lacks is missing for every lead."""
    views: dict[str, ColumnView] = {}

    def view(field: str) -> ColumnView:
        if field not in views:
            if field == EMAIL_DOMAIN_TYPE_FIELD:
                views[field] = view("email").email_domain_types()
            else:
                values = columns.get(field)
                views[field] = ColumnView(None if values is None else list(values), n)
        return views[field]

    chosen: list[str | None] = [None] * n
    open_ = np.ones(n, dtype=bool)
    for rule in spec.rules:
        if not open_.any():
            break
        hit = open_.copy()
        for field, op, value in rule.when:
            hit &= evaluate(view(field), op, value)
        for position in np.flatnonzero(hit).tolist():
            chosen[position] = rule.name
        open_ &= ~hit
    if spec.fallback is not None:
        for position in np.flatnonzero(open_).tolist():
            chosen[position] = spec.fallback.name
    return chosen


__all__ = [
    "FALLBACK_RULE_NAME",
    "NURTURE_ACTIONS",
    "ROUTING_METHODS",
    "SLA_ACTIONS",
    "NurtureAction",
    "RoutingRule",
    "RoutingSpec",
    "match_rules",
    "parse_routing",
    "routing_to_document",
]
