"""The rule-set document: frozen dataclasses, validation and JSON export.

The JSON shape is the one in DESIGN.md §4 (the same document the API, `manage.py ruleset
import/export` and the rule editor exchange). `parse_ruleset` is the only way a document becomes a
`RuleSetSpec`; it validates everything and reports every problem it finds at once, each with a
JSON path, so the editor can mark all bad inputs in one round trip.

Normal form (what `parse_ruleset` produces and `ruleset_to_document` accepts):

- list values (`in` / `not_in` lists, the `between` pair) are tuples, so specs are hashable;
- `EventRule.where` is a tuple of `(key, value)` pairs sorted by key, each value a JSON scalar
  (exact JSON equality) or a `PropertyTest` (an operator object such as `{"gte": 9}`;
  `{"is_set": false}` becomes `is_not_set` and `{"is_not_set": false}` becomes `is_set`);
- `floor` and `ceiling` are ints (scores are integers, so a fractional bound would be a lie);
- `is_set` / `is_not_set` carry `value=None`.

`parse_ruleset(ruleset_to_document(spec)) == spec` for every spec in normal form.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

OPERATORS: tuple[str, ...] = (
    "eq",
    "neq",
    "in",
    "not_in",
    "contains",
    "not_contains",
    "gte",
    "lte",
    "between",
    "is_set",
    "is_not_set",
)
RULE_KINDS: tuple[str, ...] = ("attribute", "event", "inactivity")

# Operators whose value is a single scalar compared as text (or numerically when both are numbers).
SCALAR_OPERATORS = frozenset({"eq", "neq", "contains", "not_contains"})
LIST_OPERATORS = frozenset({"in", "not_in"})
NUMERIC_OPERATORS = frozenset({"gte", "lte"})
VALUELESS_OPERATORS = frozenset({"is_set", "is_not_set"})

EMAIL_DOMAIN_TYPE_FIELD = "email_domain_type"
EMAIL_DOMAIN_TYPES = ("business", "free")
ATTRIBUTES_PREFIX = "attributes."

# A lead column name; custom attributes are `attributes.<any non-empty key>` because CSV headers
# become attribute keys verbatim. The engine does not know the Lead model, so whether a column
# exists is the caller's check; a column the caller does not supply reads as missing.
_LEAD_FIELD_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Condition:
    """A predicate `field op value`; persona match conditions use it directly.

    `value` is a scalar for eq/neq/contains/not_contains, a tuple of scalars for in/not_in, a
    number for gte/lte, a `(low, high)` tuple for between and None for is_set/is_not_set.
    """

    field: str
    op: str
    value: Any = None


@dataclass(frozen=True)
class PropertyTest:
    """An operator on one event property in a `where` (`{"score": {"gte": 9}}`).

    `op` and `value` are those of an attribute predicate (same normal form as `Condition`) and
    mean the same: the property's value is tested exactly as a lead field would be. A property
    that is absent, JSON null, blank, or holds an object or a list reads as missing.
    """

    op: str
    value: Any = None


@dataclass(frozen=True)
class AttributeRule:
    """Contributes `points` when the predicate `field op value` holds for the lead."""

    kind: ClassVar[str] = "attribute"

    field: str
    op: str
    value: Any
    points: float
    persona: str | None = None
    name: str | None = None
    group: str | None = None


@dataclass(frozen=True)
class EventRule:
    """Contributes `points * sum(0.5 ** (age_days / half_life_days))` over matching events.

    Matching events have this `event_type`, every `where` property equal to the given value
    (JSON equality) or meeting its `PropertyTest`, and `0 <= age_days <= window_days`; each
    term is 1 without a half-life. With a `cap` the contribution is clipped to
    `[-|cap|, |cap|]`.
    """

    kind: ClassVar[str] = "event"

    event_type: str
    points: float
    window_days: float
    where: tuple[tuple[str, Any], ...] = ()
    half_life_days: float | None = None
    cap: float | None = None
    persona: str | None = None
    name: str | None = None
    group: str | None = None


@dataclass(frozen=True)
class InactivityRule:
    """Contributes `points` when the lead's last activity is `days` or more before as_of."""

    kind: ClassVar[str] = "inactivity"

    days: float
    points: float
    persona: str | None = None
    name: str | None = None
    group: str | None = None


Rule = AttributeRule | EventRule | InactivityRule


@dataclass(frozen=True)
class Band:
    """A score band; a lead gets the band with the highest `min_score` not above its score."""

    name: str
    min_score: float
    qualifies: bool = False
    persona: str | None = None


@dataclass(frozen=True)
class Persona:
    """A segment; personas are tried by ascending priority (ties: document order)."""

    name: str
    priority: int
    match: tuple[Condition, ...] = ()


@dataclass(frozen=True)
class GroupBand:
    """A band of one group's score (`{name, min_score}`), chosen by the band rule of §4."""

    name: str
    min_score: float


@dataclass(frozen=True)
class Group:
    """A rule group (e.g. fit, engagement): its rules' contributions summed and clamped to
    `[floor, cap]` (either bound optional); the clamped sum, rounded half away from zero, is
    the lead's group score, and its band the group band."""

    name: str
    cap: float | None = None
    floor: float | None = None
    bands: tuple[GroupBand, ...] = ()


ACCOUNT_METHODS: tuple[str, ...] = ("max", "top_k_mean", "sum")


@dataclass(frozen=True)
class AccountRollup:
    """How contact scores roll up into an account score: the maximum, the mean of the top `k`
    (fewer when the account has fewer contacts) or the sum, rounded half away from zero and
    limited to at most `cap` when a cap is given; `bands` as group bands."""

    method: str
    k: int = 3
    cap: float | None = None
    bands: tuple[GroupBand, ...] = ()


@dataclass(frozen=True)
class RuleSetSpec:
    """A whole rule set, as validated by `parse_ruleset`."""

    name: str
    floor: float = 0
    ceiling: float = 100
    personas: tuple[Persona, ...] = ()
    bands: tuple[Band, ...] = ()
    rules: tuple[Rule, ...] = ()
    model_weight: float = 0.0
    groups: tuple[Group, ...] = ()
    grid: tuple[str, str] | None = None
    account: AccountRollup | None = None


@dataclass(frozen=True)
class ValidationIssue:
    """One problem in a rule-set document; `path` is a JSON path such as `$.rules[2].op`."""

    path: str
    message: str


class RuleSetInvalid(ValueError):
    """Raised by `parse_ruleset` with every problem found in the document."""

    def __init__(self, errors: list[ValidationIssue]) -> None:
        self.errors = list(errors)
        shown = "; ".join(f"{e.path}: {e.message}" for e in self.errors[:10])
        more = f" (and {len(self.errors) - 10} more)" if len(self.errors) > 10 else ""
        super().__init__(f"invalid rule set, {len(self.errors)} problem(s): {shown}{more}")


# --------------------------------------------------------------------------------------------
# Validation helpers


def is_number(value: object) -> bool:
    """True for a finite int or float; bools are not numbers here (JSON true is not 1)."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, float) and math.isfinite(value)


def _is_scalar_value(value: object) -> bool:
    return isinstance(value, str | bool) or is_number(value)


def _key_path(path: str, key: str) -> str:
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
        return f"{path}.{key}"
    escaped = key.replace("\\", "\\\\").replace("'", "\\'")
    return f"{path}['{escaped}']"


class _Collector:
    """Accumulates issues while the parser keeps going, so every problem is reported."""

    def __init__(self) -> None:
        self.issues: list[ValidationIssue] = []

    def add(self, path: str, message: str) -> None:
        self.issues.append(ValidationIssue(path, message))

    def object(
        self, value: object, path: str, required: tuple[str, ...], optional: tuple[str, ...]
    ) -> Mapping[str, Any] | None:
        """Check `value` is an object with the required keys and no unknown ones."""
        if not isinstance(value, Mapping):
            self.add(path, "must be an object")
            return None
        for key in required:
            if key not in value:
                self.add(_key_path(path, key), "is required")
        allowed = set(required) | set(optional)
        for key in value:
            if not isinstance(key, str):
                self.add(path, f"has a non-string key {key!r}")
            elif key not in allowed:
                # Unknown keys are errors, not ignored: a typo such as `halflife_days` would
                # otherwise silently change how leads are scored.
                self.add(_key_path(path, key), "is not a known key")
        return value

    def text(self, obj: Mapping[str, Any], key: str, path: str) -> str | None:
        """A required non-blank string."""
        if key not in obj:
            return None
        value = obj[key]
        if not isinstance(value, str) or not value.strip():
            self.add(_key_path(path, key), "must be a non-empty string")
            return None
        return value

    def optional_text(self, obj: Mapping[str, Any], key: str, path: str) -> str | None:
        if obj.get(key) is None:
            return None
        return self.text(obj, key, path)

    def number(self, obj: Mapping[str, Any], key: str, path: str) -> float | None:
        if key not in obj:
            return None
        value = obj[key]
        if not is_number(value):
            self.add(_key_path(path, key), "must be a number")
            return None
        return value

    def positive(self, obj: Mapping[str, Any], key: str, path: str) -> float | None:
        value = self.number(obj, key, path)
        if value is not None and value <= 0:
            self.add(_key_path(path, key), "must be greater than 0")
            return None
        return value


# --------------------------------------------------------------------------------------------
# Parsing


def parse_ruleset(document: object) -> RuleSetSpec:
    """Validate a rule-set JSON document (DESIGN.md §4) and return its `RuleSetSpec`.

    Raises `RuleSetInvalid` listing every problem found (not just the first), each with a JSON
    path: missing or unknown keys, wrong types (bools are never numbers), unknown kinds and
    operators, operator values of the wrong shape, non-positive `window_days` /
    `half_life_days` / inactivity `days`, `floor >= ceiling`, duplicate persona names, duplicate
    band names or `min_score`s within one persona scope, more than one qualifying band in a
    scope, references to undefined personas, `model_weight` outside [0, 1] and `where` values
    that are neither scalars nor one operator object with a valid value.
    """
    c = _Collector()
    doc = c.object(
        document,
        "$",
        required=("name", "rules"),
        optional=(
            "floor",
            "ceiling",
            "personas",
            "bands",
            "model_weight",
            "groups",
            "grid",
            "account",
        ),
    )
    if doc is None:
        raise RuleSetInvalid(c.issues)

    name = c.text(doc, "name", "$")
    floor = _parse_bound(c, doc, "floor", 0)
    ceiling = _parse_bound(c, doc, "ceiling", 100)
    if floor is not None and ceiling is not None and floor >= ceiling:
        c.add("$.ceiling", f"must be greater than floor ({floor})")

    model_weight: float = 0.0
    if "model_weight" in doc:
        weight = c.number(doc, "model_weight", "$")
        if weight is not None and not 0 <= weight <= 1:
            c.add("$.model_weight", "must be between 0 and 1")
        elif weight is not None:
            model_weight = weight

    personas = _parse_list(c, doc, "personas", _parse_persona)
    # Names are checked on the raw items so that a persona with some other error still counts
    # as defined (no noisy "names no defined persona" for rules that reference it).
    raw_personas = doc.get("personas")
    names_seen: dict[str, int] = {}
    for i, raw in enumerate(raw_personas if isinstance(raw_personas, list) else []):
        raw_name = raw.get("name") if isinstance(raw, Mapping) else None
        if not isinstance(raw_name, str):
            continue
        if raw_name in names_seen:
            c.add(
                f"$.personas[{i}].name",
                f"duplicates the name of $.personas[{names_seen[raw_name]}]",
            )
        else:
            names_seen[raw_name] = i
    persona_names = frozenset(names_seen)
    personas_ok = "personas" not in doc or isinstance(raw_personas, list)

    def persona_ref(obj: Mapping[str, Any], path: str) -> str | None:
        ref = c.optional_text(obj, "persona", path)
        # When `personas` is not even a list, that error is reported already and every
        # reference would dangle: reporting them all would only be noise.
        if ref is not None and personas_ok and ref not in persona_names:
            c.add(f"{path}.persona", f"names no defined persona ({ref!r})")
        return ref

    bands = _parse_list(c, doc, "bands", lambda c_, v, p: _parse_band(c_, v, p, persona_ref))
    _check_band_scopes(c, bands)
    groups = _parse_list(c, doc, "groups", _parse_group)
    raw_groups = doc.get("groups")
    group_names: dict[str, int] = {}
    for i, raw in enumerate(raw_groups if isinstance(raw_groups, list) else []):
        raw_name = raw.get("name") if isinstance(raw, Mapping) else None
        if not isinstance(raw_name, str):
            continue
        if raw_name in group_names:
            c.add(
                f"$.groups[{i}].name", f"duplicates the name of $.groups[{group_names[raw_name]}]"
            )
        else:
            group_names[raw_name] = i
    groups_ok = "groups" not in doc or isinstance(raw_groups, list)

    def group_ref(obj: Mapping[str, Any], path: str) -> str | None:
        ref = c.optional_text(obj, "group", path)
        if ref is not None and groups_ok and ref not in group_names:
            c.add(f"{path}.group", f"names no defined group ({ref!r})")
        return ref

    rules = _parse_list(
        c, doc, "rules", lambda c_, v, p: _parse_rule(c_, v, p, persona_ref, group_ref)
    )
    grid = _parse_grid(c, doc, group_names, dict(groups), groups_ok)
    account = _parse_account(c, doc["account"], "$.account") if "account" in doc else None

    if c.issues:
        raise RuleSetInvalid(c.issues)
    assert name is not None and floor is not None and ceiling is not None
    return RuleSetSpec(
        name=name,
        floor=floor,
        ceiling=ceiling,
        personas=tuple(p for _, p in personas),
        bands=tuple(b for _, b in bands),
        rules=tuple(r for _, r in rules),
        model_weight=model_weight,
        groups=tuple(g for _, g in groups),
        grid=grid,
        account=account,
    )


def _parse_group_bands(c: _Collector, obj: Mapping[str, Any], path: str) -> tuple[GroupBand, ...]:
    """`bands: [{name, min_score}]` of a group or the account roll-up; names and min_scores
    unique (two bands at one min_score would make the band rule ambiguous)."""
    if "bands" not in obj:
        return ()
    raw = obj["bands"]
    if not isinstance(raw, list):
        c.add(f"{path}.bands", "must be a list")
        return ()
    bands: list[GroupBand] = []
    names: dict[str, int] = {}
    mins: dict[float, int] = {}
    for i, item in enumerate(raw):
        bpath = f"{path}.bands[{i}]"
        band = c.object(item, bpath, required=("name", "min_score"), optional=())
        if band is None:
            continue
        name = c.text(band, "name", bpath)
        min_score = c.number(band, "min_score", bpath)
        if name is None or min_score is None:
            continue
        if name in names:
            c.add(f"{bpath}.name", f"duplicates the name of {path}.bands[{names[name]}]")
            continue
        if min_score in mins:
            c.add(
                f"{bpath}.min_score", f"duplicates the min_score of {path}.bands[{mins[min_score]}]"
            )
            continue
        names[name], mins[min_score] = i, i
        bands.append(GroupBand(name, min_score))
    return tuple(bands)


def _parse_group(c: _Collector, value: object, path: str) -> Group | None:
    errors_before = len(c.issues)
    obj = c.object(value, path, required=("name",), optional=("cap", "floor", "bands"))
    if obj is None:
        return None
    name = c.text(obj, "name", path)
    cap = c.number(obj, "cap", path) if obj.get("cap") is not None else None
    floor = c.number(obj, "floor", path) if obj.get("floor") is not None else None
    if cap is not None and floor is not None and floor > cap:
        c.add(f"{path}.floor", f"must not exceed cap ({cap})")
    bands = _parse_group_bands(c, obj, path)
    if len(c.issues) > errors_before or name is None:
        return None
    return Group(name=name, cap=cap, floor=floor, bands=bands)


def _parse_grid(
    c: _Collector,
    doc: Mapping[str, Any],
    group_names: Mapping[str, int],
    groups: Mapping[int, Group],
    groups_ok: bool,
) -> tuple[str, str] | None:
    """`grid: [GROUP, GROUP]`: two distinct groups that have bands (the grade is their band
    names concatenated)."""
    if doc.get("grid") is None:
        return None
    grid = doc["grid"]
    if (
        not isinstance(grid, list)
        or len(grid) != 2
        or not all(isinstance(g, str) and g for g in grid)
    ):
        c.add("$.grid", "must be a list of two group names")
        return None
    if grid[0] == grid[1]:
        c.add("$.grid", "must name two different groups")
        return None
    for k, name in enumerate(grid):
        if name not in group_names:
            if groups_ok:
                c.add(f"$.grid[{k}]", f"names no defined group ({name!r})")
        else:
            group = groups.get(group_names[name])
            if group is not None and not group.bands:
                c.add(f"$.grid[{k}]", f"group {name!r} has no bands to grade by")
    return (grid[0], grid[1])


def _parse_account(c: _Collector, value: object, path: str) -> AccountRollup | None:
    errors_before = len(c.issues)
    obj = c.object(value, path, required=("method",), optional=("k", "cap", "bands"))
    if obj is None:
        return None
    method = obj.get("method")
    if "method" in obj and method not in ACCOUNT_METHODS:
        c.add(f"{path}.method", f"must be one of {', '.join(ACCOUNT_METHODS)}")
    k = obj.get("k", 3)
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        c.add(f"{path}.k", "must be a whole number of at least 1")
    elif "k" in obj and method != "top_k_mean":
        c.add(f"{path}.k", "only top_k_mean takes k")
    cap = c.positive(obj, "cap", path) if obj.get("cap") is not None else None
    bands = _parse_group_bands(c, obj, path)
    if len(c.issues) > errors_before:
        return None
    return AccountRollup(method=method, k=k, cap=cap, bands=bands)


def _parse_bound(c: _Collector, doc: Mapping[str, Any], key: str, default: int) -> int | None:
    if key not in doc:
        return default
    value = c.number(doc, key, "$")
    if value is None:
        return None
    if value != int(value):
        # Scores are integers clamped to [floor, ceiling]; a fractional bound cannot be met.
        c.add(f"$.{key}", "must be a whole number")
        return None
    return int(value)


def _parse_list(
    c: _Collector, doc: Mapping[str, Any], key: str, parse_item: Callable[..., Any]
) -> list[tuple[int, Any]]:
    """Parse `doc[key]` as a list; returns `(index, parsed)` for the items that parsed."""
    if key not in doc:
        return []
    items = doc[key]
    if not isinstance(items, list):
        c.add(f"$.{key}", "must be a list")
        return []
    parsed = []
    for i, item in enumerate(items):
        value = parse_item(c, item, f"$.{key}[{i}]")
        if value is not None:
            parsed.append((i, value))
    return parsed


def _parse_persona(c: _Collector, value: object, path: str) -> Persona | None:
    errors_before = len(c.issues)
    obj = c.object(value, path, required=("name", "priority", "match"), optional=())
    if obj is None:
        return None
    name = c.text(obj, "name", path)
    priority = obj.get("priority")
    if "priority" in obj and (isinstance(priority, bool) or not isinstance(priority, int)):
        c.add(f"{path}.priority", "must be an integer")
    conditions: list[Condition] = []
    if "match" in obj:
        match = obj["match"]
        if not isinstance(match, list):
            c.add(f"{path}.match", "must be a list")
        else:
            for j, item in enumerate(match):
                cond_path = f"{path}.match[{j}]"
                cond = c.object(item, cond_path, required=("field", "op"), optional=("value",))
                if cond is None:
                    continue
                predicate = _parse_predicate(c, cond, cond_path)
                if predicate is not None:
                    conditions.append(Condition(*predicate))
    if len(c.issues) > errors_before:
        return None
    assert name is not None
    return Persona(name=name, priority=priority, match=tuple(conditions))


def _parse_band(c: _Collector, value: object, path: str, persona_ref) -> Band | None:
    errors_before = len(c.issues)
    obj = c.object(value, path, required=("name", "min_score"), optional=("qualifies", "persona"))
    if obj is None:
        return None
    name = c.text(obj, "name", path)
    min_score = c.number(obj, "min_score", path)
    qualifies = obj.get("qualifies", False)
    if qualifies is None:
        qualifies = False
    if not isinstance(qualifies, bool):
        c.add(f"{path}.qualifies", "must be true or false")
    persona = persona_ref(obj, path)
    if len(c.issues) > errors_before:
        return None
    assert name is not None and min_score is not None
    return Band(name=name, min_score=min_score, qualifies=qualifies, persona=persona)


def _check_band_scopes(c: _Collector, bands: list[tuple[int, Band]]) -> None:
    """Band names and min_scores are unique, and at most one band qualifies, per persona scope."""
    by_name: dict[tuple[str | None, str], int] = {}
    by_min: dict[tuple[str | None, float], int] = {}
    qualifying: dict[str | None, int] = {}
    for i, band in bands:
        scope = band.persona
        if (scope, band.name) in by_name:
            c.add(
                f"$.bands[{i}].name",
                f"duplicates the name of $.bands[{by_name[scope, band.name]}] in the same scope",
            )
        else:
            by_name[scope, band.name] = i
        # Two bands at one min_score would make "the band with the highest min_score" ambiguous.
        if (scope, band.min_score) in by_min:
            c.add(
                f"$.bands[{i}].min_score",
                f"duplicates the min_score of $.bands[{by_min[scope, band.min_score]}]"
                " in the same scope",
            )
        else:
            by_min[scope, band.min_score] = i
        if band.qualifies:
            if scope in qualifying:
                c.add(
                    f"$.bands[{i}].qualifies",
                    f"only one band per scope may qualify; $.bands[{qualifying[scope]}] does too",
                )
            else:
                qualifying[scope] = i


_RULE_KEYS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # kind: (required keys, optional keys); "kind", "points", "persona", "name", "group" are
    # common.
    "attribute": (("field", "op"), ("value",)),
    "event": (("event_type", "window_days"), ("where", "half_life_days", "cap")),
    "inactivity": (("days",), ()),
}


def _parse_rule(
    c: _Collector, value: object, path: str, persona_ref, group_ref=lambda obj, path: None
) -> Rule | None:
    if not isinstance(value, Mapping):
        c.add(path, "must be an object")
        return None
    kind = value.get("kind")
    if "kind" not in value:
        c.add(f"{path}.kind", "is required")
        return None
    if kind not in RULE_KINDS:
        c.add(f"{path}.kind", f"must be one of {', '.join(RULE_KINDS)}")
        return None
    required, optional = _RULE_KEYS[kind]
    errors_before = len(c.issues)
    obj = c.object(
        value,
        path,
        required=("kind", "points", *required),
        optional=("persona", "name", "group", *optional),
    )
    assert obj is not None
    points = c.number(obj, "points", path)
    persona = persona_ref(obj, path)
    name = c.optional_text(obj, "name", path)
    group = group_ref(obj, path)

    rule: Rule | None = None
    if kind == "attribute":
        predicate = _parse_predicate(c, obj, path)
        if predicate is not None and points is not None:
            field, op, pvalue = predicate
            rule = AttributeRule(field, op, pvalue, points, persona=persona, name=name, group=group)
    elif kind == "event":
        event_type = c.text(obj, "event_type", path)
        window = c.positive(obj, "window_days", path)
        half_life = None
        if obj.get("half_life_days") is not None:
            half_life = c.positive(obj, "half_life_days", path)
        cap = c.number(obj, "cap", path) if obj.get("cap") is not None else None
        where = _parse_where(c, obj.get("where"), f"{path}.where") if "where" in obj else ()
        if None not in (event_type, window, points, where):
            rule = EventRule(
                event_type=event_type,
                points=points,
                window_days=window,
                where=where,
                half_life_days=half_life,
                cap=cap,
                persona=persona,
                name=name,
                group=group,
            )
    else:
        days = c.positive(obj, "days", path)
        if days is not None and points is not None:
            rule = InactivityRule(days=days, points=points, persona=persona, name=name, group=group)
    if len(c.issues) > errors_before:
        return None
    return rule


def _parse_where(c: _Collector, value: object, path: str) -> tuple[tuple[str, Any], ...] | None:
    if value is None:
        return ()
    if not isinstance(value, Mapping):
        c.add(path, "must be an object of property values")
        return None
    pairs = []
    ok = True
    for key, item in value.items():
        if not isinstance(key, str) or not key:
            c.add(path, f"has an invalid property name {key!r}")
            ok = False
        elif isinstance(item, Mapping):
            test = _parse_property_test(c, item, _key_path(path, key))
            if test is None:
                ok = False
            else:
                pairs.append((key, test))
        elif item is not None and not _is_scalar_value(item):
            c.add(
                _key_path(path, key),
                "must be a string, number, boolean, null or one operator object",
            )
            ok = False
        else:
            pairs.append((key, item))
    return tuple(sorted(pairs, key=lambda pair: pair[0])) if ok else None


def _parse_property_test(c: _Collector, item: Mapping[str, Any], path: str) -> PropertyTest | None:
    """`{"op": value}` with exactly one attribute operator; is_set / is_not_set take a bool."""
    if len(item) != 1 or next(iter(item)) not in OPERATORS:
        c.add(
            path,
            "must be a string, number, boolean, null or one operator object"
            f" ({{op: value}} with op one of {', '.join(OPERATORS)})",
        )
        return None
    ((op, value),) = item.items()
    vpath = _key_path(path, op)
    if op in VALUELESS_OPERATORS:
        if not isinstance(value, bool):
            c.add(vpath, f"{op} takes true or false")
            return None
        # {"is_set": false} is is_not_set: one normal form per meaning.
        if not value:
            op = "is_not_set" if op == "is_set" else "is_set"
        return PropertyTest(op, None)
    errors_before = len(c.issues)
    value = _check_operator_value(c, op, value, vpath)
    if len(c.issues) > errors_before:
        return None
    return PropertyTest(op, value)


def _parse_predicate(
    c: _Collector, obj: Mapping[str, Any], path: str
) -> tuple[str, str, Any] | None:
    """Validate `field`, `op` and `value` of a condition or attribute rule."""
    errors_before = len(c.issues)
    field = c.text(obj, "field", path)
    if field is not None:
        if field.startswith(ATTRIBUTES_PREFIX):
            if not field[len(ATTRIBUTES_PREFIX) :].strip():
                c.add(f"{path}.field", "must name an attribute: attributes.<key>")
        elif not _LEAD_FIELD_RE.match(field):
            c.add(f"{path}.field", "must be a lead field name or attributes.<key>")
    op = obj.get("op")
    if "op" in obj and op not in OPERATORS:
        c.add(f"{path}.op", f"must be one of {', '.join(OPERATORS)}")
        op = None
    value = obj.get("value")
    vpath = f"{path}.value"
    if op in VALUELESS_OPERATORS:
        if value is not None:
            c.add(vpath, f"{op} takes no value")
        value = None
    elif op is not None and "value" not in obj:
        c.add(vpath, f"is required for {op}")
    elif op is not None:
        value = _check_operator_value(c, op, value, vpath)
    if (
        field == EMAIL_DOMAIN_TYPE_FIELD
        and op in {"eq", "neq", "in", "not_in"}
        and len(c.issues) == errors_before
    ):
        for item in value if op in LIST_OPERATORS else (value,):
            if not isinstance(item, str) or item.strip().casefold() not in EMAIL_DOMAIN_TYPES:
                c.add(vpath, "email_domain_type is 'business' or 'free'")
                break
    if len(c.issues) > errors_before or field is None or op is None:
        return None
    return field, op, value


def _check_operator_value(c: _Collector, op: str, value: Any, vpath: str) -> Any:
    """Check the value of a valued operator (attribute predicates and `where` tests alike);
    returns it in normal form (lists as tuples)."""
    if op in SCALAR_OPERATORS:
        _check_match_scalar(c, value, vpath)
    elif op in LIST_OPERATORS:
        if not isinstance(value, list | tuple):
            c.add(vpath, f"{op} takes a list of values")
        elif not value:
            c.add(vpath, f"{op} takes a non-empty list")
        else:
            for k, item in enumerate(value):
                _check_match_scalar(c, item, f"{vpath}[{k}]")
            value = tuple(value)
    elif op in NUMERIC_OPERATORS:
        if not is_number(value):
            c.add(vpath, f"{op} takes a number")
    elif op == "between":
        if (
            not isinstance(value, list | tuple)
            or len(value) != 2
            or not all(is_number(v) for v in value)
        ):
            c.add(vpath, "between takes a list of two numbers [low, high]")
        elif value[0] > value[1]:
            c.add(vpath, "between takes [low, high] with low <= high")
        else:
            value = (value[0], value[1])
    return value


def _check_match_scalar(c: _Collector, value: object, path: str) -> None:
    if not _is_scalar_value(value):
        c.add(path, "must be a string, number or boolean")
    elif isinstance(value, str) and not value.strip():
        # A blank value could only ever match a missing field, which no operator but is_not_set
        # matches: the rule would be dead. Ask for is_set / is_not_set instead.
        c.add(path, "must not be blank (use is_set / is_not_set)")


# --------------------------------------------------------------------------------------------
# Export


def ruleset_to_document(spec: RuleSetSpec) -> dict[str, Any]:
    """The JSON document for `spec` (the inverse of `parse_ruleset`).

    Optional keys are omitted when they hold their default (`persona`, `name`, `half_life_days`,
    `cap`, `where`, `qualifies`); `floor`, `ceiling` and `model_weight` are always written.
    """
    return {
        "name": spec.name,
        "floor": spec.floor,
        "ceiling": spec.ceiling,
        "model_weight": spec.model_weight,
        "personas": [
            {
                "name": p.name,
                "priority": p.priority,
                "match": [_predicate_document(m.field, m.op, m.value) for m in p.match],
            }
            for p in spec.personas
        ],
        "bands": [_band_document(b) for b in spec.bands],
        "rules": [_rule_document(r) for r in spec.rules],
    } | _extension_document(spec)


def _extension_document(spec: RuleSetSpec) -> dict[str, Any]:
    """`groups`, `grid` and `account`, written only when used: a rule set without them
    exports exactly as before they existed."""
    doc: dict[str, Any] = {}
    if spec.groups:
        doc["groups"] = [
            {"name": g.name}
            | ({"cap": g.cap} if g.cap is not None else {})
            | ({"floor": g.floor} if g.floor is not None else {})
            | {"bands": [{"name": b.name, "min_score": b.min_score} for b in g.bands]}
            for g in spec.groups
        ]
    if spec.grid is not None:
        doc["grid"] = list(spec.grid)
    if spec.account is not None:
        a = spec.account
        doc["account"] = (
            {"method": a.method}
            | ({"k": a.k} if a.method == "top_k_mean" else {})
            | ({"cap": a.cap} if a.cap is not None else {})
            | {"bands": [{"name": b.name, "min_score": b.min_score} for b in a.bands]}
        )
    return doc


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple | list) else value


def _predicate_document(field: str, op: str, value: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"field": field, "op": op}
    if op not in VALUELESS_OPERATORS:
        doc["value"] = _plain(value)
    return doc


def where_value_document(value: Any) -> Any:
    """A `where` value as JSON: the scalar, or `{op: value}` for a `PropertyTest`."""
    if isinstance(value, PropertyTest):
        return {value.op: True if value.op in VALUELESS_OPERATORS else _plain(value.value)}
    return value


def _band_document(band: Band) -> dict[str, Any]:
    doc: dict[str, Any] = {"name": band.name, "min_score": band.min_score}
    if band.qualifies:
        doc["qualifies"] = True
    if band.persona is not None:
        doc["persona"] = band.persona
    return doc


def _rule_document(rule: Rule) -> dict[str, Any]:
    doc: dict[str, Any] = {"kind": rule.kind}
    if rule.name is not None:
        doc["name"] = rule.name
    if rule.persona is not None:
        doc["persona"] = rule.persona
    if rule.group is not None:
        doc["group"] = rule.group
    if isinstance(rule, AttributeRule):
        doc.update(_predicate_document(rule.field, rule.op, rule.value))
    elif isinstance(rule, EventRule):
        doc["event_type"] = rule.event_type
        where = {key: where_value_document(value) for key, value in rule.where}
        if where:
            doc["where"] = where
        doc["window_days"] = rule.window_days
        if rule.half_life_days is not None:
            doc["half_life_days"] = rule.half_life_days
        if rule.cap is not None:
            doc["cap"] = rule.cap
    else:
        doc["days"] = rule.days
    doc["points"] = rule.points
    return doc


# Where an issue's path points in the rule-set document, for forms and the editor.
_ITEM_PATH = re.compile(r"^\$\.(rules|personas|bands)\[(\d+)\](.*)$")
_KEY = re.compile(r"^\.([A-Za-z_]+)|^\['([^']*)'\]")
_MATCH = re.compile(r"^\.match\[(\d+)\](?:\.(\w+))?")


def issue_location(path: str) -> tuple[str, int, str, str] | None:
    """`$.rules[2].op` -> ("rules", 2, "op", ""); `$.personas[0].match[1].value` ->
    ("personas", 0, "match", "condition 2 (value)"); None for paths outside the lists."""
    found = _ITEM_PATH.match(path)
    if not found:
        return None
    section, index, rest = found.group(1), int(found.group(2)), found.group(3)
    match = _MATCH.match(rest)
    if match:
        detail = f"condition {int(match.group(1)) + 1}"
        if match.group(2):
            detail += f" ({match.group(2)})"
        return section, index, "match", detail
    key = _KEY.match(rest)
    if not key:
        return section, index, "__all__", ""
    return section, index, key.group(1) or key.group(2), ""
