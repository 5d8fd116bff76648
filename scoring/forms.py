"""Forms of the rule editor: one rule, persona or band of a draft, and a draft's settings.

The forms only type the inputs (numbers are numbers, a value list is a list); what makes a
rule valid is decided by the engine (`parse_ruleset`) on the whole draft, and its errors are
put back beside the fields here (`add_issues`). Each form turns itself into the item of the
DESIGN.md §4 document with `to_item()`, leaving out what is empty so the engine can say
"is required" where it is."""

from __future__ import annotations

import json
import re
from typing import Any

from django import forms

from scoring.engine import (
    ACCOUNT_METHODS,
    OPERATORS,
    RULE_KINDS,
    ValidationIssue,
    issue_location,
)
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


# Field names of the field-by-field groups editor: g<i>-name, g<i>-b<j>-min_score, ...
_GROUP_KEY = re.compile(r"^g(\d{1,3})-(name|cap|floor)$")
_GROUP_BAND_KEY = re.compile(r"^g(\d{1,3})-b(\d{1,3})-(name|min_score)$")
_ACCOUNT_BAND_KEY = re.compile(r"^account-b(\d{1,3})-(name|min_score)$")
# Engine paths of the groups document -> which input they are about.
_GROUP_PATH = re.compile(r"^\$\.groups\[(\d+)\](?:\.bands\[(\d+)\])?(?:\.(\w+))?")
_ACCOUNT_PATH = re.compile(r"^\$\.account(?:\.bands\[(\d+)\])?(?:\.(\w+))?")
_GRID_PATH = re.compile(r"^\$\.grid(?:\[(\d)\])?")
MAX_EDITOR_ROWS = 50


class GroupsFieldsForm(forms.Form):
    """The groups, grid and account roll-up field by field: a row per group (name, cap,
    floor) with its bands (name, min score), the grid as two group names, and the roll-up
    (method, k, cap, bands). Rows are numbered in their field names (`g0-name`,
    `g0-b1-min_score`, `account-b0-name`); the page's script adds and removes rows, so the
    numbers may have gaps, and a row left entirely empty is dropped.

    The form types the inputs only; `document()` is the `{"groups", "grid", "account"}`
    object that `draft_groups_save` validates with the engine, whose issues `add_issues`
    puts back beside the inputs they are about. Unbound, it shows `document` (the draft's)."""

    grid_row = forms.ChoiceField(required=False, label="Grid rows (first letter of the grade)")
    grid_column = forms.ChoiceField(required=False, label="Grid columns (second)")
    account_method = forms.ChoiceField(
        required=False,
        label="Account roll-up",
        choices=[("", "None"), *((m, m) for m in ACCOUNT_METHODS)],
    )
    account_k = forms.IntegerField(required=False, min_value=1, label="k")
    account_cap = forms.FloatField(required=False, label="Cap")

    def __init__(
        self, data: Any = None, *, document: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        initial = {} if data is not None else self.flatten(document or {})
        super().__init__(data, initial=initial, **kwargs)
        source = data if data is not None else initial
        keys = [str(k) for k in source]
        self.group_ids = sorted({int(m[1]) for k in keys if (m := _GROUP_KEY.match(k))})
        self.band_ids: dict[int, list[int]] = {}
        for key in keys:
            if match := _GROUP_BAND_KEY.match(key):
                self.band_ids.setdefault(int(match[1]), []).append(int(match[2]))
        self.group_ids = sorted(set(self.group_ids) | set(self.band_ids))[:MAX_EDITOR_ROWS]
        self.band_ids = {g: sorted(set(b))[:MAX_EDITOR_ROWS] for g, b in self.band_ids.items()}
        self.account_band_ids = sorted(
            {int(m[1]) for k in keys if (m := _ACCOUNT_BAND_KEY.match(k))}
        )[:MAX_EDITOR_ROWS]
        for g in self.group_ids:
            self.fields[f"g{g}-name"] = forms.CharField(
                required=False,
                max_length=100,
                # The script offers the names typed here in the grid's selects.
                widget=forms.TextInput(attrs={"data-group-name": ""}),
            )
            self.fields[f"g{g}-cap"] = forms.FloatField(required=False)
            self.fields[f"g{g}-floor"] = forms.FloatField(required=False)
            for b in self.band_ids.get(g, []):
                self._band_fields(f"g{g}-b{b}")
        for b in self.account_band_ids:
            self._band_fields(f"account-b{b}")
        names = [str(source.get(f"g{g}-name") or "").strip() for g in self.group_ids]
        choices = [("", "—"), *((n, n) for n in dict.fromkeys(names) if n)]
        self.fields["grid_row"].choices = choices
        self.fields["grid_column"].choices = choices
        # Kept by clean(): document position -> field-name prefix, to place engine issues.
        self._group_prefixes: list[tuple[str, list[str]]] = []
        self._account_prefixes: list[str] = []

    def _band_fields(self, prefix: str) -> None:
        self.fields[f"{prefix}-name"] = forms.CharField(required=False, max_length=100)
        self.fields[f"{prefix}-min_score"] = forms.FloatField(required=False)

    @staticmethod
    def flatten(document: dict[str, Any]) -> dict[str, Any]:
        """The editor's field values for a `{"groups", "grid", "account"}` document."""
        values: dict[str, Any] = {}
        for g, group in enumerate(document.get("groups") or []):
            values[f"g{g}-name"] = group.get("name", "")
            values[f"g{g}-cap"] = _number(group.get("cap"))
            values[f"g{g}-floor"] = _number(group.get("floor"))
            for b, band in enumerate(group.get("bands") or []):
                values[f"g{g}-b{b}-name"] = band.get("name", "")
                values[f"g{g}-b{b}-min_score"] = _number(band.get("min_score"))
        grid = document.get("grid") or []
        if len(grid) == 2:
            values["grid_row"], values["grid_column"] = grid
        account = document.get("account") or {}
        if account:
            values["account_method"] = account.get("method", "")
            values["account_k"] = account.get("k")
            values["account_cap"] = _number(account.get("cap"))
            for b, band in enumerate(account.get("bands") or []):
                values[f"account-b{b}-name"] = band.get("name", "")
                values[f"account-b{b}-min_score"] = _number(band.get("min_score"))
        return values

    def _bands(self, data: dict[str, Any], prefixes: list[str]) -> tuple[list, list[str]]:
        bands, kept = [], []
        for prefix in prefixes:
            name = (data.get(f"{prefix}-name") or "").strip()
            min_score = data.get(f"{prefix}-min_score")
            if not name and min_score is None:
                continue  # an empty row: dropped
            band: dict[str, Any] = {}
            if name:
                band["name"] = name
            if min_score is not None:
                band["min_score"] = _number(min_score)
            bands.append(band)
            kept.append(prefix)
        return bands, kept

    def document(self) -> dict[str, Any]:
        """The `{"groups", "grid", "account"}` object the valid form stands for (keys with
        nothing in them left out, so the engine says "is required" where it is)."""
        data = self.cleaned_data
        groups = []
        self._group_prefixes = []
        for g in self.group_ids:
            prefix = f"g{g}"
            bands, kept = self._bands(data, [f"{prefix}-b{b}" for b in self.band_ids.get(g, [])])
            name = (data.get(f"{prefix}-name") or "").strip()
            cap, floor = data.get(f"{prefix}-cap"), data.get(f"{prefix}-floor")
            if not name and cap is None and floor is None and not bands:
                continue
            group: dict[str, Any] = {"name": name} if name else {}
            if cap is not None:
                group["cap"] = _number(cap)
            if floor is not None:
                group["floor"] = _number(floor)
            if bands:
                group["bands"] = bands
            groups.append(group)
            self._group_prefixes.append((prefix, kept))
        document: dict[str, Any] = {}
        if groups:
            document["groups"] = groups
        row, column = data.get("grid_row") or "", data.get("grid_column") or ""
        if row or column:
            document["grid"] = [row, column]
        method = data.get("account_method") or ""
        bands, self._account_prefixes = self._bands(
            data, [f"account-b{b}" for b in self.account_band_ids]
        )
        if method or bands or data.get("account_k") is not None:
            account: dict[str, Any] = {"method": method} if method else {}
            if data.get("account_k") is not None:
                account["k"] = data["account_k"]
            if data.get("account_cap") is not None:
                account["cap"] = _number(data["account_cap"])
            if bands:
                account["bands"] = bands
            document["account"] = account
        return document

    def add_issues(self, issues: list[ValidationIssue]) -> None:
        """Put the engine's issues about `document()` beside the inputs they are about; an
        issue about something else (a rule naming a removed group) goes above the form."""
        for issue in issues:
            field = self._field_for(issue.path)
            if field in self.fields:
                self.add_error(field, issue.message)
            else:
                self.add_error(None, f"{issue.path}: {issue.message}")

    def _field_for(self, path: str) -> str | None:
        if match := _GROUP_PATH.match(path):
            index = int(match[1])
            if index >= len(self._group_prefixes):
                return None
            prefix, bands = self._group_prefixes[index]
            if match[2] is not None:
                band = int(match[2])
                if band < len(bands):
                    return f"{bands[band]}-{match[3] or 'name'}"
                return f"{prefix}-name"
            return (
                f"{prefix}-{match[3]}"
                if match[3] in ("name", "cap", "floor")
                else (f"{prefix}-name")
            )
        if match := _ACCOUNT_PATH.match(path):
            if match[1] is not None:
                band = int(match[1])
                if band < len(self._account_prefixes):
                    return f"{self._account_prefixes[band]}-{match[2] or 'name'}"
                return "account_method"
            return (
                f"account_{match[2]}" if match[2] in ("method", "k", "cap") else ("account_method")
            )
        if match := _GRID_PATH.match(path):
            return "grid_column" if match[1] == "1" else "grid_row"
        return None

    def group_rows(self) -> list[dict[str, Any]]:
        """Each group's bound fields and its bands', for the template (no logic there)."""
        return [
            {
                "id": g,
                "name": self[f"g{g}-name"],
                "cap": self[f"g{g}-cap"],
                "floor": self[f"g{g}-floor"],
                "bands": [
                    {"id": b, "name": self[f"g{g}-b{b}-name"],
                     "min_score": self[f"g{g}-b{b}-min_score"]}
                    for b in self.band_ids.get(g, [])
                ],
                "next_band": max(self.band_ids.get(g) or [-1]) + 1,
            }
            for g in self.group_ids
        ]  # fmt: skip

    @property
    def next_group(self) -> int:
        """The number the script gives the next group row it adds."""
        return max(self.group_ids or [-1]) + 1

    @property
    def next_account_band(self) -> int:
        return max(self.account_band_ids or [-1]) + 1

    def account_band_rows(self) -> list[dict[str, Any]]:
        return [
            {
                "id": b,
                "name": self[f"account-b{b}-name"],
                "min_score": self[f"account-b{b}-min_score"],
            }
            for b in self.account_band_ids
        ]


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
