"""Forms of the rule editor: one rule, persona or band of a draft, and a draft's settings.

The forms only type the inputs (numbers are numbers, a value list is a list); what makes a
rule valid is decided by the engine (`parse_ruleset`) on the whole draft, and its errors are
put back beside the fields here (`add_issues`). Each form turns itself into the item of the
DESIGN.md §4 document with `to_item()`, leaving out what is empty so the engine can say
"is required" where it is."""

from __future__ import annotations

import json
from typing import Any

from django import forms

from scoring.engine import OPERATORS, RULE_KINDS, ValidationIssue, issue_location
from scoring.models import Band, Persona, Rule

VALUELESS = ("is_set", "is_not_set")
LIST_OPERATORS = ("in", "not_in")
# The rule editor says what an operator does; the rule-set document keeps the engine's codes.
OPERATOR_WORDS = {
    "eq": "is",
    "neq": "is not",
    "in": "is one of",
    "not_in": "is not one of",
    "contains": "contains",
    "not_contains": "does not contain",
    "gte": "at least",
    "lte": "at most",
    "between": "between",
    "is_set": "is set",
    "is_not_set": "is not set",
}


# ---------------------------------------------------------------------------------------------
# Values as people type them


def scalar_from_text(text: str) -> Any:
    """ "200" -> 200, "2.5" -> 2.5, "true" -> True, '"200"' -> "200" (quotes force text),
    anything else -> the trimmed text."""
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return text[1:-1]
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        return text
    return number if number == number and abs(number) != float("inf") else text


def value_from_text(op: str, text: str) -> Any:
    """The operator's value from what was typed: a comma-separated (or JSON) list for in /
    not_in, "low, high" for between, a scalar otherwise; None when nothing was typed."""
    text = (text or "").strip()
    if op in VALUELESS or not text:
        return None
    if op in LIST_OPERATORS or op == "between":
        if text.startswith("["):
            try:
                parsed = json.loads(text)
            except json.JSONDecodeError:
                return text
            return parsed
        separator = " and " if op == "between" and " and " in text else ","
        return [scalar_from_text(part) for part in text.split(separator) if part.strip()]
    return scalar_from_text(text)


def value_to_text(value: Any) -> str:
    """The inverse of `value_from_text` for display in an input."""
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        return ", ".join(value_to_text(v) for v in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        # Text that would read back as a number, a boolean or trimmed text keeps its quotes.
        return value if scalar_from_text(value) == value and value else json.dumps(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def where_from_text(text: str) -> dict[str, Any]:
    """Event properties that must match: a JSON object or `key=value, key=value`."""
    text = (text or "").strip()
    if not text:
        return {}
    if text.startswith("{"):
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError as exc:
            raise forms.ValidationError(f"is not valid JSON ({exc.msg})") from exc
        if not isinstance(parsed, dict):
            raise forms.ValidationError("must be a JSON object")
        return parsed
    where: dict[str, Any] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise forms.ValidationError("write key=value pairs separated by commas")
        where[key.strip()] = scalar_from_text(value)
    return where


def where_to_text(where: dict[str, Any]) -> str:
    # Operator objects ({"gte": 9}) have no key=value form: the whole where shows as JSON.
    if any(isinstance(value, dict) for value in (where or {}).values()):
        return json.dumps(where)
    return ", ".join(f"{key}={value_to_text(value)}" for key, value in (where or {}).items())


def conditions_from_text(text: str) -> list[dict[str, Any]]:
    """Persona match conditions, one per line: `field op value` (value optional)."""
    conditions = []
    for number, line in enumerate((text or "").splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split(None, 2)
        if len(parts) < 2:
            raise forms.ValidationError(
                f"line {number}: write `field operator value`, e.g. `title contains engineer`"
            )
        condition: dict[str, Any] = {"field": parts[0], "op": parts[1]}
        value = value_from_text(parts[1], parts[2] if len(parts) > 2 else "")
        if value is not None:
            condition["value"] = value
        conditions.append(condition)
    return conditions


def conditions_to_text(conditions: list[dict[str, Any]]) -> str:
    lines = []
    for c in conditions or []:
        value = value_to_text(c.get("value"))
        lines.append(f"{c.get('field', '')} {c.get('op', '')} {value}".rstrip())
    return "\n".join(lines)


def _number(value: float | None) -> float | int | None:
    if value is None:
        return None
    return int(value) if float(value).is_integer() else value


# ---------------------------------------------------------------------------------------------
# Engine errors beside the fields


class DocumentItemForm(forms.Form):
    """Shared: put the engine's issues about this item beside the form's fields."""

    def add_issues(self, issues: list[ValidationIssue]) -> None:
        for issue in issues:
            location = issue_location(issue.path)
            field = location[2] if location else "__all__"
            detail = location[3] if location else ""
            message = f"{detail}: {issue.message}" if detail else issue.message
            if field not in self.fields:
                # A key the form has no input for (e.g. `kind`): say it for the whole item.
                message = f"{field} {message}" if field != "__all__" else message
                field = None
            self.add_error(field, message)


class RuleForm(DocumentItemForm):
    kind = forms.ChoiceField(choices=[(k, Rule.Kind(k).label) for k in RULE_KINDS])
    name = forms.CharField(required=False, max_length=200)
    persona = forms.ChoiceField(required=False, choices=[("", "All leads")])
    group = forms.ChoiceField(required=False, choices=[("", "No group")])
    points = forms.FloatField(required=False)
    field = forms.CharField(required=False, max_length=120)
    op = forms.ChoiceField(
        required=False, choices=[("", "—"), *((o, OPERATOR_WORDS.get(o, o)) for o in OPERATORS)]
    )
    value = forms.CharField(required=False, max_length=2000)
    event_type = forms.CharField(required=False, max_length=80)
    where = forms.CharField(required=False, max_length=2000)
    window_days = forms.FloatField(required=False)
    half_life_days = forms.FloatField(required=False)
    cap = forms.FloatField(required=False)
    days = forms.FloatField(required=False)

    def __init__(
        self, *args: Any, personas: list[str] = (), groups: list[str] = (), **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.fields["persona"].choices = [("", "All leads"), *((p, p) for p in personas)]
        self.fields["group"].choices = [("", "No group"), *((g, g) for g in groups)]

    def clean_where(self) -> dict[str, Any]:
        return where_from_text(self.cleaned_data.get("where", ""))

    def to_item(self) -> dict[str, Any]:
        """The rule as a §4 document item (only the keys its kind uses)."""
        data = self.cleaned_data
        kind = data["kind"]
        item: dict[str, Any] = {"kind": kind}
        if data.get("points") is not None:
            item["points"] = _number(data["points"])
        if kind == "attribute":
            if data.get("field"):
                item["field"] = data["field"].strip()
            if data.get("op"):
                item["op"] = data["op"]
                value = value_from_text(data["op"], data.get("value", ""))
                if value is not None:
                    item["value"] = value
        elif kind == "event":
            if data.get("event_type"):
                item["event_type"] = data["event_type"].strip()
            if data.get("where"):
                item["where"] = data["where"]
            for key in ("window_days", "half_life_days", "cap"):
                if data.get(key) is not None:
                    item[key] = _number(data[key])
        elif data.get("days") is not None:
            item["days"] = _number(data["days"])
        if data.get("persona"):
            item["persona"] = data["persona"]
        if data.get("group"):
            item["group"] = data["group"]
        if data.get("name", "").strip():
            item["name"] = data["name"].strip()
        return item

    @staticmethod
    def initial_for(rule: Rule) -> dict[str, Any]:
        return {
            "kind": rule.kind,
            "name": rule.name,
            "persona": rule.persona,
            "group": rule.group,
            "points": _number(rule.points),
            "field": rule.field,
            "op": rule.op,
            "value": value_to_text(rule.value),
            "event_type": rule.event_type,
            "where": where_to_text(rule.where),
            "window_days": _number(rule.window_days),
            "half_life_days": _number(rule.half_life_days),
            "cap": _number(rule.cap),
            "days": _number(rule.days),
        }


class PersonaForm(DocumentItemForm):
    name = forms.CharField(max_length=100, required=False)
    priority = forms.IntegerField(required=False)
    match = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="One condition per line: field operator value, e.g. title contains engineer",
    )

    def clean_match(self) -> list[dict[str, Any]]:
        return conditions_from_text(self.cleaned_data.get("match", ""))

    def to_item(self) -> dict[str, Any]:
        data = self.cleaned_data
        item: dict[str, Any] = {"match": data.get("match") or []}
        if data.get("name", "").strip():
            item["name"] = data["name"].strip()
        if data.get("priority") is not None:
            item["priority"] = data["priority"]
        return item

    @staticmethod
    def initial_for(persona: Persona) -> dict[str, Any]:
        return {
            "name": persona.name,
            "priority": persona.priority,
            "match": conditions_to_text(persona.match),
        }


class BandForm(DocumentItemForm):
    name = forms.CharField(max_length=60, required=False)
    min_score = forms.FloatField(required=False)
    qualifies = forms.BooleanField(required=False)
    persona = forms.ChoiceField(required=False, choices=[("", "All leads")])

    def __init__(self, *args: Any, personas: list[str] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["persona"].choices = [("", "All leads"), *((p, p) for p in personas)]

    def to_item(self) -> dict[str, Any]:
        data = self.cleaned_data
        item: dict[str, Any] = {}
        if data.get("name", "").strip():
            item["name"] = data["name"].strip()
        if data.get("min_score") is not None:
            item["min_score"] = _number(data["min_score"])
        if data.get("qualifies"):
            item["qualifies"] = True
        if data.get("persona"):
            item["persona"] = data["persona"]
        return item

    @staticmethod
    def initial_for(band: Band) -> dict[str, Any]:
        return {
            "name": band.name,
            "min_score": _number(band.min_score),
            "qualifies": band.qualifies,
            "persona": band.persona,
        }


class RuleSetSettingsForm(forms.Form):
    name = forms.CharField(max_length=200)
    floor = forms.IntegerField()
    ceiling = forms.IntegerField()
    model_weight = forms.FloatField(min_value=0, max_value=1)

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        floor, ceiling = data.get("floor"), data.get("ceiling")
        if floor is not None and ceiling is not None and floor >= ceiling:
            self.add_error("ceiling", "must be greater than the floor")
        return data


class GroupsForm(forms.Form):
    """The rule set's groups, grid and account roll-up, edited as the JSON they are in the
    document: `{"groups": [...], "grid": [...], "account": {...}}` (each key optional)."""

    document = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 10, "spellcheck": "false"}),
        max_length=20000,
        help_text='{"groups": [{"name": "fit", "cap": 50, "bands": [{"name": "A", '
        '"min_score": 40}]}], "grid": ["fit", "engagement"]}',
    )

    def clean_document(self) -> dict[str, Any]:
        text = (self.cleaned_data.get("document") or "").strip()
        if not text:
            return {}
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError as exc:
            raise forms.ValidationError(f"is not valid JSON ({exc.msg})") from exc
        if not isinstance(parsed, dict):
            raise forms.ValidationError("must be a JSON object")
        unknown = set(parsed) - {"groups", "grid", "account"}
        if unknown:
            raise forms.ValidationError(f"unknown keys: {', '.join(sorted(unknown))}")
        return parsed


class ImportForm(forms.Form):
    document = forms.FileField(help_text="A rule-set JSON document (DESIGN.md §4).")
    publish = forms.BooleanField(required=False)

    MAX_BYTES = 2 * 1024 * 1024

    def clean_document(self) -> Any:
        upload = self.cleaned_data["document"]
        if upload.size > self.MAX_BYTES:
            raise forms.ValidationError("The file is larger than 2 MB.")
        try:
            return json.loads(upload.read().decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise forms.ValidationError("The file is not UTF-8 text.") from exc
        except json.JSONDecodeError as exc:
            raise forms.ValidationError(
                f"The file is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})."
            ) from exc
