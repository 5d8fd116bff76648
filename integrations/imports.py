"""CSV and JSONL import of leads and events: the service behind `import_leads`,
`import_events` and the upload page.

Contract:

- The file is checked before anything is written: it must be readable, UTF-8 (a BOM is
  fine), structurally valid CSV (or one JSON value per line), and a CSV header must hold the
  required columns (after the mapping's renames). Any of these fails with :class:`ImportFailed`
  and nothing is written.
- Rows are then streamed in chunks of ``CHUNK_ROWS``. A bad row is rejected with its line
  number (the physical line where the record starts; the header is line 1) and reasons; the
  good rows are written, one transaction per chunk, unless ``atomic`` is set, in which case the
  whole file is one transaction that is rolled back when any row is rejected. Lead files on
  PostgreSQL are staged instead (``integrations.lead_staging``): the good rows are written in
  one transaction at the end, holding the lead-write lock for that write (about 5 s for
  100,000 rows), so a late failure stores none of them.
- Lead columns: :data:`LEAD_COLUMNS`; any other column becomes a custom attribute under its
  own name (numbers stored as numbers, empty cells missing). Event columns:
  :data:`EVENT_COLUMNS`; any other column becomes an event property.
- Importing the same file twice changes nothing the second time (upserts by identity; values
  equal to the stored ones are not written).
- Times without a zone are read in the project's TIME_ZONE; a date alone means midnight.
- The CSV delimiter is sniffed from the first lines (comma, semicolon or tab: the one that
  splits them into the most columns, the same number on every line) unless given
  (``delimiter``). ``id_column="row"`` numbers the rows (1, 2, ...) as their external ids, for
  a file without an id column; ``id_column=NAME`` reads the external id from column NAME.
  Every header error quotes the header as parsed, with the delimiter used.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import io
import json
import logging
import math
import re
import zoneinfo
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from integrations.lead_staging import LeadStage
from leadscoring.db import is_postgres
from scoring import strict_json
from scoring.engine import gc_paused
from scoring.jobs import (
    UNREACHABLE_KEEP,
    JobStatus,
    dispatch,
    job_claim,
    job_fail,
    job_finish,
    job_heartbeat,
)
from scoring.models import LifecycleStage
from scoring.services.events import EventInput, events_ingest, parse_event_item, parse_timestamp
from scoring.services.leads import LeadUpsert, leads_bulk_upsert

logger = logging.getLogger(__name__)

Kind = Literal["leads", "events"]
CHUNK_ROWS = 5000
# Leads on PostgreSQL go through a staging table (integrations.lead_staging); tests switch it
# off to compare with the generic path.
STAGED_LEADS = True
MAX_ERRORS_REPORTED = 20
DEFAULT_SOURCE = "csv"
MAPPINGS_DIR = Path(__file__).resolve().parent / "mappings"
IMPORT_TASK = "integrations.tasks.import_file_task"

LEAD_COLUMNS: tuple[str, ...] = (
    "external_id",
    "email",
    "first_name",
    "last_name",
    "title",
    "company",
    "employees",
    "industry",
    "country",
    "source",
    "owner",
    "lifecycle_stage",
    "created_at",
    "mql_at",
    "sql_at",
    "opportunity_at",
    "converted_at",
    "revenue",
)
EVENT_COLUMNS: tuple[str, ...] = (
    "external_id",
    "email",
    "lead_external_id",
    "lead_source",
    "event_type",
    "occurred_at",
    "properties",
)
_TEXT_LIMITS = {
    "first_name": 120,
    "last_name": 120,
    "title": 200,
    "company": 200,
    "industry": 120,
    "country": 120,
    "source": 120,
    "external_id": 255,
    "email": 254,
}
_DATETIME_COLUMNS = ("created_at", "mql_at", "sql_at", "opportunity_at", "converted_at")
_INT = re.compile(r"^[+-]?\d+$")
_FLOAT = re.compile(r"^[+-]?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_STAGES = tuple(LifecycleStage.values)
_LEAD_COLUMN_SET = frozenset(LEAD_COLUMNS)


class ImportFailed(Exception):
    """The file cannot be imported at all; nothing was written."""


class _RollBack(Exception):
    pass


# --------------------------------------------------------------------------------------------
# Mapping files
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mapping:
    """What a mapping file says (see integrations/mappings/x_education_leads.json).

    ``columns`` renames file columns (to canonical columns or attribute names); ``drop`` lists
    file columns that are not imported; ``missing`` lists cell values that mean "not filled
    in"; ``values`` maps cell values per target column, ``"*"`` applying to every column;
    ``label`` names the label column and what a positive value sets on the lead; ``leakage``
    and ``doubtful`` are for the ML features to exclude (leakage columns must also be dropped).
    """

    name: str = ""
    identity_source: str | None = None
    columns: dict[str, str] = field(default_factory=dict)
    drop: frozenset[str] = frozenset()
    missing: frozenset[str] = frozenset({""})
    values: dict[str, dict[str, Any]] = field(default_factory=dict)
    label: dict[str, Any] | None = None
    leakage: tuple[str, ...] = ()
    doubtful: tuple[str, ...] = ()
    required: tuple[str, ...] = ()

    def target(self, column: str) -> str:
        return self.columns.get(column, column)

    @property
    def removed_attributes(self) -> tuple[str, ...]:
        """The attribute keys a re-import with this mapping deletes from the leads it updates:
        the dropped columns, under their file names and the names a rename gives them."""
        return tuple(sorted(set(self.drop) | {self.target(column) for column in self.drop}))

    def feature_exclusions(self) -> dict[str, list[str]]:
        """What training must leave out because of this mapping (stored with the import job,
        wherever the mapping file was): leakage and label columns and doubtful ones, each
        under its file name and its stored name."""

        def both(columns: Iterable[str]) -> list[str]:
            return sorted(set(columns) | {self.target(column) for column in columns})

        label = [self.label["column"]] if self.label else []
        return {
            "leakage": both([*self.leakage, *label]),
            "doubtful": both(self.doubtful),
        }


def load_mapping(source: str | Path | dict | None) -> Mapping:
    """A Mapping from a file path, a shipped mapping's name (``x_education_leads``) or a
    dict; raises ImportFailed naming what is wrong."""
    if source is None:
        return Mapping()
    if isinstance(source, dict):
        document = source
    else:
        path = Path(source)
        if not path.exists() and (MAPPINGS_DIR / f"{source}.json").exists():
            path = MAPPINGS_DIR / f"{source}.json"
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise ImportFailed(f"cannot read the mapping file {source}: {exc}") from None
        except ValueError as exc:
            raise ImportFailed(f"the mapping file {source} is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise ImportFailed("a mapping must be a JSON object")
    allowed = {
        "name",
        "description",
        "notes",
        "identity_source",
        "columns",
        "drop",
        "missing",
        "values",
        "label",
        "leakage",
        "doubtful",
        "required",
    }
    unknown = sorted(set(document) - allowed)
    if unknown:
        raise ImportFailed(f"unknown keys in the mapping: {', '.join(unknown)}")

    def strings(key: str) -> list[str]:
        value = document.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ImportFailed(f"mapping {key!r} must be a list of strings")
        return value

    columns = document.get("columns", {})
    if not isinstance(columns, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and v for k, v in columns.items()
    ):
        raise ImportFailed("mapping 'columns' must map column names to new names")
    values = document.get("values", {})
    if not isinstance(values, dict) or not all(isinstance(v, dict) for v in values.values()):
        raise ImportFailed("mapping 'values' must map a column (or '*') to a value map")
    label = document.get("label")
    if label is not None:
        if not isinstance(label, dict) or not isinstance(label.get("column"), str):
            raise ImportFailed("mapping 'label' must be an object with a 'column'")
        if not isinstance(label.get("positive", []), list) or not isinstance(
            label.get("sets", {}), dict
        ):
            raise ImportFailed("mapping 'label' needs 'positive' (list) and 'sets' (object)")
        stage = label.get("sets", {}).get("lifecycle_stage")
        if stage is not None and stage not in LifecycleStage.values:
            raise ImportFailed(f"mapping label sets an unknown lifecycle_stage {stage!r}")
    drop = strings("drop")
    leakage = strings("leakage")
    kept_leaks = sorted(set(leakage) - set(drop))
    if kept_leaks:
        raise ImportFailed(f"leakage columns must be dropped: {', '.join(kept_leaks)}")
    identity_source = document.get("identity_source")
    if identity_source is not None and (
        not isinstance(identity_source, str) or not 0 < len(identity_source) <= 40
    ):
        raise ImportFailed("mapping 'identity_source' must be a name of at most 40 characters")
    return Mapping(
        name=str(document.get("name", "")),
        identity_source=identity_source,
        columns=columns,
        drop=frozenset(drop),
        missing=frozenset(strings("missing")) | {""} if "missing" in document else frozenset({""}),
        values=values,
        label=label,
        leakage=tuple(leakage),
        doubtful=tuple(strings("doubtful")),
        required=tuple(strings("required")),
    )


# --------------------------------------------------------------------------------------------
# Reading files
# --------------------------------------------------------------------------------------------


@dataclass
class FileInfo:
    path: Path
    format: Literal["csv", "jsonl"]
    header: list[str] | None
    rows: int
    delimiter: str = ","
    id_column: str | None = None  # "row": rows numbered as external ids; else a column name


DELIMITERS = (",", ";", "\t")
DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}
SNIFF_LINES = 50
ROW_ID = "row"


def parse_delimiter(text: str | None) -> str | None:
    """A --delimiter value as one character ("tab" and "\\t" mean a tab); None to sniff.
    Raises ImportFailed naming the flag."""
    if text is None or text == "":
        return None
    named = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";", "pipe": "|"}
    value = named.get(text.lower(), text)
    if len(value) != 1 or value in '"\r\n':
        raise ImportFailed(f"--delimiter {text!r} must be one character, e.g. ';' or tab")
    return value


def sniff_delimiter(path: Path) -> str:
    """Comma, semicolon or tab: the one that splits the first SNIFF_LINES records into the
    most columns, the same number on every record (ties and nothing better: comma)."""
    with _open_text(path) as text:
        sample = "".join(line for _, line in zip(range(SNIFF_LINES), text, strict=False))
    best, best_width = ",", 1
    for delimiter in DELIMITERS:
        try:
            records = [r for r in csv.reader(io.StringIO(sample), delimiter=delimiter) if r]
        except csv.Error:
            continue
        if len(records) > 1:
            records = records[:-1]  # the last sampled line may be cut short
        widths = {len(record) for record in records}
        if len(widths) == 1 and (width := widths.pop()) > best_width:
            best, best_width = delimiter, width
    return best


def _header_as_parsed(header: list[str], delimiter: str) -> str:
    """The header as the importer read it, for error messages."""
    shown = ", ".join(json.dumps(h, ensure_ascii=False) for h in header[:30])
    more = f", ... ({len(header)} columns)" if len(header) > 30 else ""
    name = DELIMITER_NAMES.get(delimiter, repr(delimiter))
    return f"the header as parsed with the {name} delimiter: [{shown}{more}]"


def _detect_format(path: Path) -> Literal["csv", "jsonl"]:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    return "csv"


def preflight(
    path: str | Path,
    kind: Kind,
    mapping: Mapping,
    *,
    delimiter: str | None = None,
    id_column: str | None = None,
) -> FileInfo:
    """Check the whole file before anything is written (see the module docstring) and count
    its rows for the progress bar. Raises ImportFailed."""
    path = Path(path)
    fmt = _detect_format(path)
    try:
        with path.open("rb") as handle:
            head = handle.read(4)
            if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
                raise ImportFailed(f"{path.name} is UTF-16; save it as UTF-8")
            handle.seek(0)
            decoder = codecs.getincrementaldecoder("utf-8-sig")()
            line = 1
            while chunk := handle.read(1 << 20):
                if b"\x00" in chunk:
                    raise ImportFailed(f"{path.name} is not a text file (it holds NUL bytes)")
                try:
                    decoder.decode(chunk)
                except UnicodeDecodeError as exc:
                    bad_line = line + chunk[: exc.start].count(b"\n")
                    raise ImportFailed(
                        f"{path.name} is not valid UTF-8 (line {bad_line}: byte "
                        f"0x{chunk[exc.start]:02x}); save it as UTF-8"
                    ) from None
                line += chunk.count(b"\n")
            try:
                decoder.decode(b"", final=True)
            except UnicodeDecodeError:
                raise ImportFailed(
                    f"{path.name} is not valid UTF-8 (it ends mid-character)"
                ) from None
    except OSError as exc:
        raise ImportFailed(f"cannot read {path}: {exc.strerror or exc}") from None

    if fmt == "jsonl":
        with _open_text(path) as text:
            rows = sum(1 for raw in text if raw.strip())
        if rows == 0:
            raise ImportFailed(f"{path.name} holds no rows")
        return FileInfo(path, fmt, None, rows)

    delimiter = delimiter or sniff_delimiter(path)
    with _open_text(path) as text:
        reader = csv.reader(text, delimiter=delimiter)
        try:
            header = next(reader, None)
            if not header or not any(h.strip() for h in header):
                raise ImportFailed(f"{path.name} is empty (no header row)")
            rows = sum(1 for record in reader if record)
        except csv.Error as exc:
            raise ImportFailed(
                f"{path.name} is not valid CSV (line {reader.line_num}): {exc}"
            ) from None
    header = [h.strip() for h in header]
    parsed = _header_as_parsed(header, delimiter)
    duplicates = sorted({h for h in header if header.count(h) > 1})
    if duplicates:
        raise ImportFailed(f"duplicate columns in the header: {', '.join(duplicates)}; {parsed}")
    if id_column is not None and kind != "leads":
        raise ImportFailed("--id-column is for lead files")
    if id_column == ROW_ID:
        if "external_id" in {mapping.target(h) for h in header if h not in mapping.drop}:
            raise ImportFailed(f"--id-column row, but the file has an external_id; {parsed}")
    elif id_column is not None and id_column not in header:
        raise ImportFailed(f"--id-column {id_column!r} is not a column; {parsed}")
    effective = header if id_column is None else [*header, "external_id"]
    missing = _missing_required(effective, kind, mapping)
    if missing:
        hint = " (or give --id-column row to number the rows)" if kind == "leads" else ""
        raise ImportFailed(f"missing required column(s): {missing}{hint}; {parsed}")
    return FileInfo(path, fmt, header, rows, delimiter, id_column)


def _missing_required(header: list[str], kind: Kind, mapping: Mapping) -> str:
    present = {mapping.target(h) for h in header if h not in mapping.drop}
    absent = [c for c in mapping.required if c not in header]
    if absent:
        return ", ".join(absent)
    if kind == "leads":
        if not present & {"external_id", "email"}:
            return "external_id or email"
        return ""
    needed = [c for c in ("external_id", "event_type", "occurred_at") if c not in present]
    if not present & {"email", "lead_external_id"}:
        needed.append("email or lead_external_id")
    return ", ".join(needed)


def _open_text(path: Path) -> io.TextIOWrapper:
    return path.open("r", encoding="utf-8-sig", newline="")


def _records(info: FileInfo) -> Iterator[tuple[int, dict[str, Any] | None, str]]:
    """(line number, row as a dict or None, problem) for every record of the file."""
    with _open_text(info.path) as text:
        if info.format == "jsonl":
            for number, raw in enumerate(text, start=1):
                if not raw.strip():
                    continue
                try:
                    value = strict_json.loads(raw)
                except strict_json.StrictJSONError as exc:
                    yield number, None, str(exc)
                    continue
                if not isinstance(value, dict):
                    yield number, None, "each line must be a JSON object"
                    continue
                yield number, value, ""
            return
        reader = csv.reader(text, delimiter=info.delimiter)
        header = [h.strip() for h in next(reader)]
        width = len(header)
        number = 0
        id_position = header.index(info.id_column) if info.id_column in header else None
        while True:
            start = reader.line_num + 1
            try:
                record = next(reader)
            except StopIteration:
                return
            if not record:
                continue
            number += 1
            if len(record) != width:
                yield start, None, f"expected {width} fields, found {len(record)}"
                continue
            row = dict(zip(header, record, strict=True))
            if info.id_column == ROW_ID:
                row["external_id"] = str(number)  # the row's number among the data rows
            elif id_position is not None:
                row["external_id"] = record[id_position]
            yield start, row, ""


# --------------------------------------------------------------------------------------------
# Rows -> service inputs
# --------------------------------------------------------------------------------------------


def _scalar(text: str) -> Any:
    """A cell's value for a custom attribute: numbers as numbers, the rest as text."""
    if _INT.match(text):
        number = int(text)
        return number if abs(number) < 2**53 else text
    if _FLOAT.match(text):
        number = float(text)
        return number if math.isfinite(number) else text
    return text


@dataclass
class _RowContext:
    mapping: Mapping
    source: str
    naive_tz: dt.tzinfo
    now: dt.datetime
    owners: dict[str, int] | None = None
    column_plans: dict[Any, tuple[str, dict[str, Any]]] = field(default_factory=dict)
    lead_plans: dict[Any, tuple[int, str, dict[str, Any], int]] = field(default_factory=dict)

    def owner_id(self, username: str) -> int | None:
        if self.owners is None:
            self.owners = dict(get_user_model().objects.values_list("username", "id"))
        return self.owners.get(username)


def _mapped_cells(row: dict[str, Any], ctx: _RowContext) -> Iterator[tuple[str, str, Any]]:
    """(file column, target column, value) with the mapping applied; missing cells skipped.
    What the mapping says about a column is worked out once per column, not once per cell."""
    plans = ctx.column_plans
    missing = ctx.mapping.missing
    for column, raw in row.items():
        plan = plans.get(column)
        if plan is None:
            plan = plans[column] = _column_plan(column, ctx.mapping)
        if plan is _SKIP:
            continue
        target, value_map = plan
        if isinstance(raw, str):
            value = raw.strip()
            if value in missing:
                continue
            if value in value_map:
                value = value_map[value]
        else:
            value = raw
        if value is None:
            continue
        yield column, target, value


_SKIP = ("", {})


def _column_plan(column: Any, mapping: Mapping) -> tuple[str, dict[str, Any]]:
    if column is None or column in mapping.drop:
        return _SKIP
    target = mapping.target(column)
    value_map = {
        **mapping.values.get("*", {}),
        **mapping.values.get(column, {}),
        **mapping.values.get(target, {}),
    }
    return target, value_map


_PLAIN_TEXT_TARGETS = frozenset(
    {"first_name", "last_name", "title", "company", "industry", "country", "source"}
)
# What a lead row does with a column's cells, worked out once per column (see _lead_plan).
_LABEL, _ATTRIBUTE, _TEXT, _OTHER = range(4)


def _lead_plan(column: Any, ctx: _RowContext) -> tuple[int, str, dict[str, Any], int]:
    """(kind, target, value map, text limit) for one file column of a lead file."""
    target, value_map = _column_plan(column, ctx.mapping)
    if (target, value_map) == _SKIP:
        return (-1, "", {}, 0)
    label = ctx.mapping.label
    if label and column == label["column"]:
        kind = _LABEL
    elif target not in _LEAD_COLUMN_SET:
        kind = _ATTRIBUTE
    elif target in _PLAIN_TEXT_TARGETS:
        kind = _TEXT
    else:
        kind = _OTHER
    return (kind, target, value_map, _TEXT_LIMITS.get(target, 0))


def lead_from_row(row: dict[str, Any], ctx: _RowContext) -> tuple[LeadUpsert | None, list[str]]:
    """One file row as a LeadUpsert, or the reasons it is rejected. This runs once per row of
    every lead import, so the per-column decisions are cached in ``ctx.lead_plans`` and the
    common cells (plain text, custom attributes) take the shortest way."""
    values: dict[str, Any] = {}
    attributes: dict[str, Any] = {}
    reasons: list[str] = []
    external_id = None
    plans = ctx.lead_plans
    missing = ctx.mapping.missing
    for column, raw in row.items():
        plan = plans.get(column)
        if plan is None:
            plan = plans[column] = _lead_plan(column, ctx)
        kind, target, value_map, limit = plan
        if kind < 0:
            continue
        if isinstance(raw, str):
            value = raw.strip()
            if value in missing:
                continue
            if value_map and value in value_map:
                value = value_map[value]
                if value is None:
                    continue
        elif raw is None:
            continue
        else:
            value = raw
        if kind == _TEXT and type(value) is str:
            value = value.strip()  # a mapped value may carry spaces
            if len(value) > limit:
                reasons.append(f"{target}: at most {limit} characters")
            else:
                values[target] = value
            continue
        if kind == _ATTRIBUTE:
            if target == "attributes" and isinstance(value, dict):
                attributes.update(value)  # a JSONL row may nest its custom attributes
            else:
                attributes[target] = _scalar(value) if isinstance(value, str) else value
            continue
        if kind == _LABEL:
            label = ctx.mapping.label
            text = str(value).strip()
            if text in [str(p) for p in label.get("positive", [])]:
                values.update({k: v for k, v in label.get("sets", {}).items() if v is not None})
            elif text not in [str(n) for n in label.get("negative", [])]:
                reasons.append(f"{column}: {text!r} is not a known label value")
            continue
        text = str(value).strip()
        if limit and len(text) > limit:
            reasons.append(f"{target}: at most {limit} characters")
        elif target == "external_id":
            external_id = text
        elif target == "email":
            if not _EMAIL.match(text):
                reasons.append(f"email: {text!r} is not an email address")
            values["email"] = text
        elif target == "employees":
            if not _INT.match(text) or int(text) < 0:
                reasons.append(f"employees: {text!r} is not a whole number")
            else:
                values["employees"] = int(text)
        elif target == "revenue":
            if not _FLOAT.match(text) or not math.isfinite(float(text)):
                reasons.append(f"revenue: {text!r} is not a number")
            else:
                values["revenue"] = float(text)
        elif target in _DATETIME_COLUMNS:
            try:
                values[target] = parse_timestamp(text, naive_tz=ctx.naive_tz)
            except ValueError as exc:
                reasons.append(f"{target}: {exc}")
        elif target == "lifecycle_stage":
            stage = text.lower()
            if stage not in _STAGES:
                reasons.append(f"lifecycle_stage: {text!r} is not one of {', '.join(_STAGES)}")
            else:
                values["lifecycle_stage"] = stage
        elif target == "owner":
            owner_id = ctx.owner_id(text)
            if owner_id is None:
                reasons.append(f"owner: no user {text!r}")
            else:
                values["owner_id"] = owner_id
        else:
            values[target] = text
    if (
        external_id is None
        and "email" not in values
        and not any(r.startswith(("email", "external_id")) for r in reasons)
    ):
        reasons.append("needs an external_id or an email")
    if reasons:
        return None, reasons
    return (
        LeadUpsert(
            source=ctx.source if external_id else None,
            external_id=external_id,
            values=values,
            attributes=attributes,
            remove_attributes=ctx.mapping.removed_attributes,
        ),
        [],
    )


def event_from_row(row: dict[str, Any], ctx: _RowContext) -> tuple[EventInput | None, list[str]]:
    """One file row as an EventInput, or the reasons it is rejected. Columns other than the
    canonical ones become event properties."""
    item: dict[str, Any] = {}
    properties: dict[str, Any] = {}
    reasons: list[str] = []
    for _column, target, value in _mapped_cells(row, ctx):
        if target == "properties":
            if isinstance(value, str):
                try:
                    value = json.loads(value)
                except ValueError:
                    reasons.append("properties: not valid JSON")
                    continue
            if not isinstance(value, dict):
                reasons.append("properties: must be a JSON object")
                continue
            properties = {**value, **properties}
        elif target in EVENT_COLUMNS:
            item[target] = value
        else:
            properties[target] = _scalar(value) if isinstance(value, str) else value
    if "lead_external_id" in item:
        item.setdefault("lead_source", ctx.source)
    item["properties"] = properties
    event, problems = parse_event_item(
        item, now=ctx.now, default_source=ctx.source, naive_tz=ctx.naive_tz
    )
    reasons.extend(problems)
    return (event, []) if not reasons else (None, reasons)


# --------------------------------------------------------------------------------------------
# Running an import
# --------------------------------------------------------------------------------------------


@dataclass
class ImportSummary:
    """The one-line JSON summary the commands print and the upload page shows."""

    file: str
    kind: str
    status: str = "done"  # done | rolled_back | failed
    rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    error: str = ""
    # The mapping's leakage/label and doubtful columns (`Mapping.feature_exclusions`), stored
    # with the import job for training; not part of the printed summary.
    feature_exclusions: dict[str, list[str]] = field(default_factory=dict)

    def reject(self, line: int, reasons: list[str]) -> None:
        """Count a rejected row; the report keeps the first MAX_ERRORS_REPORTED lines of the
        file (rows may be rejected out of line order: the staged path rejects the rows it
        hands to the generic path after all others were read)."""
        self.rejected += 1
        if len(self.errors) < MAX_ERRORS_REPORTED:
            self.errors.append({"line": line, "reasons": reasons})
            return
        last = max(range(len(self.errors)), key=lambda i: self.errors[i]["line"])
        if line < self.errors[last]["line"]:
            self.errors[last] = {"line": line, "reasons": reasons}

    def as_dict(self) -> dict[str, Any]:
        data = {
            "file": self.file,
            "kind": self.kind,
            "status": self.status,
            "rows": self.rows,
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "rejected": self.rejected,
            "errors": self.errors,
        }
        if self.error:
            data["error"] = self.error
        return data


Progress = Callable[[int, int, "ImportSummary"], None]


def import_file(
    path: str | Path,
    kind: Kind,
    *,
    source: str | None = None,
    mapping: str | Path | dict | Mapping | None = None,
    atomic: bool = False,
    progress: Progress | None = None,
    delimiter: str | None = None,
    id_column: str | None = None,
) -> ImportSummary:
    """Import a CSV or JSONL file of leads or events; see the module docstring. Never raises
    for bad input: a file-level failure comes back as ``status="failed"`` with ``error``."""
    path = Path(path)
    summary = ImportSummary(file=path.name, kind=kind)
    try:
        rules = mapping if isinstance(mapping, Mapping) else load_mapping(mapping)
        if kind == "leads":
            summary.feature_exclusions = rules.feature_exclusions()
        info = preflight(
            path, kind, rules, delimiter=parse_delimiter(delimiter), id_column=id_column or None
        )
    except ImportFailed as exc:
        summary.status, summary.error = "failed", str(exc)
        logger.info("import.failed kind=%s reason=preflight", kind)
        return summary
    ctx = _RowContext(
        mapping=rules,
        source=source or rules.identity_source or DEFAULT_SOURCE,
        # datetime.UTC is much cheaper to compute offsets with than ZoneInfo("UTC").
        naive_tz=dt.UTC if settings.TIME_ZONE == "UTC" else zoneinfo.ZoneInfo(settings.TIME_ZONE),
        now=timezone.now(),
    )
    if len(ctx.source) > 40:
        summary.status, summary.error = "failed", "--source is longer than 40 characters"
        return summary
    try:
        if atomic:
            with transaction.atomic():
                _stream(info, kind, ctx, summary, progress)
                if summary.rejected:
                    raise _RollBack
        else:
            _stream(info, kind, ctx, summary, progress)
    except _RollBack:
        summary.status = "rolled_back"
        summary.created = summary.updated = summary.unchanged = 0
    logger.info(
        "import.finished kind=%s status=%s rows=%s created=%s updated=%s unchanged=%s rejected=%s",
        kind,
        summary.status,
        summary.rows,
        summary.created,
        summary.updated,
        summary.unchanged,
        summary.rejected,
    )
    return summary


def _stream(
    info: FileInfo,
    kind: Kind,
    ctx: _RowContext,
    summary: ImportSummary,
    progress: Progress | None,
) -> None:
    if kind == "leads" and STAGED_LEADS and is_postgres():
        _stream_leads_staged(info, ctx, summary, progress)
        return
    convert = lead_from_row if kind == "leads" else event_from_row
    batch: list[tuple[int, Any]] = []
    for line, item in _valid_items(info, convert, ctx, summary):
        batch.append((line, item))
        if len(batch) >= CHUNK_ROWS:
            _write(batch, kind, summary)
            batch = []
            if progress:
                progress(summary.rows, info.rows, summary)
    if batch:
        _write(batch, kind, summary)
    if progress:
        progress(summary.rows, info.rows, summary)


def _valid_items(
    info: FileInfo,
    convert: Callable[[dict[str, Any], _RowContext], tuple[Any, list[str]]],
    ctx: _RowContext,
    summary: ImportSummary,
) -> Iterator[tuple[int, Any]]:
    """Each good record as (line, item); every record is counted, and a bad one is rejected
    with its line and reasons."""
    for line, row, problem in _records(info):
        summary.rows += 1
        if row is None:
            summary.reject(line, [problem])
            continue
        item, reasons = convert(row, ctx)
        if item is None:
            summary.reject(line, reasons)
            continue
        yield line, item


def _stream_leads_staged(
    info: FileInfo, ctx: _RowContext, summary: ImportSummary, progress: Progress | None
) -> None:
    """Leads on PostgreSQL: validate and COPY every row into a staging table (progress is
    reported while reading), then write the whole file set-based in one transaction (see
    integrations.lead_staging). Outside an atomic import the staging runs in autocommit, so
    the upload page sees the progress."""
    with LeadStage(remove_attributes=ctx.mapping.removed_attributes) as stage:
        # Reading builds a few values per cell, none in cycles: the collector's repeated full
        # collections cost 0.3 s of 1.5 s for 100,000 rows (measured), so it is paused.
        with gc_paused():
            for line, item in _valid_items(info, lead_from_row, ctx, summary):
                stage.add(line, item)
                if summary.rows % CHUNK_ROWS == 0:
                    stage.flush()
                    if progress:
                        progress(summary.rows, info.rows, summary)
        with transaction.atomic():
            counts = stage.apply()
            summary.created += counts["created"]
            summary.updated += counts["updated"]
            summary.unchanged += counts["unchanged"]
            batch: list[tuple[int, Any]] = []
            for line, item in stage.entangled_rows():
                batch.append((line, item))
                if len(batch) >= CHUNK_ROWS:
                    _write(batch, "leads", summary)
                    batch = []
            if batch:
                _write(batch, "leads", summary)
    summary.errors.sort(key=lambda e: e["line"])
    if progress:
        progress(summary.rows, info.rows, summary)


def _write(batch: list[tuple[int, Any]], kind: Kind, summary: ImportSummary) -> None:
    if kind == "leads":
        result = leads_bulk_upsert([item for _, item in batch])
        for (line, _), outcome in zip(batch, result.outcomes, strict=True):
            if outcome.status == "rejected":
                summary.reject(line, [outcome.reason])
            else:
                setattr(summary, outcome.status, getattr(summary, outcome.status) + 1)
        return
    result = events_ingest([item for _, item in batch])
    for position, reasons in result.rejected:
        summary.reject(batch[position][0], reasons)
    summary.created += result.accepted
    summary.unchanged += result.duplicate
    summary.errors.sort(key=lambda e: e["line"])


# --------------------------------------------------------------------------------------------
# Import jobs (the upload page)
# --------------------------------------------------------------------------------------------


def import_job_run(job_id: int) -> None:
    """Run a queued ImportJob to completion, saving progress after each chunk. The job is
    claimed with a conditional UPDATE, so a task delivered twice runs it once. The uploaded
    file is deleted afterwards."""
    from integrations.models import ImportJob

    this = ImportJob.objects.filter(pk=job_id)
    if not job_claim(this):
        logger.info("import.job.skipped job=%s", job_id)
        return
    job = ImportJob.objects.get(pk=job_id)
    path = Path(settings.MEDIA_ROOT) / job.stored_path

    def progress(done: int, total: int, summary: ImportSummary) -> None:
        if job.atomic:
            return  # the job row is inside the import's transaction: nobody would see it
        job_heartbeat(
            this,
            done=done,
            total=total,
            created=summary.created,
            updated=summary.updated,
            unchanged=summary.unchanged,
            rejected=summary.rejected,
        )

    try:
        summary = import_file(
            path,
            job.kind,
            source=job.source or None,
            mapping=job.mapping or None,
            atomic=job.atomic,
            progress=progress,
        )
        summary.file = job.file_name
    except Exception as exc:
        job_fail(this, f"internal error: {type(exc).__name__}")
        raise
    finally:
        path.unlink(missing_ok=True)
    _job_finish_with(this, summary, job.progress_total)


def _job_finish_with(jobs: Any, summary: ImportSummary, total: int) -> None:
    """End the job with the import's summary; the mapping's feature exclusions are kept
    only when something was written (a failed or rolled-back import taught training nothing)."""
    wrote = summary.status == "done"
    job_finish(
        jobs,
        status=summary.status,
        progress_done=summary.rows,
        progress_total=max(summary.rows, total),
        created=summary.created,
        updated=summary.updated,
        unchanged=summary.unchanged,
        rejected=summary.rejected,
        errors=summary.errors,
        error=summary.error,
        feature_exclusions=summary.feature_exclusions if wrote else {},
    )


def import_file_recorded(
    path: str | Path,
    kind: Kind,
    *,
    source: str | None = None,
    mapping: str | None = None,
    atomic: bool = False,
    delimiter: str | None = None,
    id_column: str | None = None,
) -> ImportSummary:
    """`import_file` run here (the import commands), recorded as an ImportJob like an
    upload, so its mapping's leakage lists reach training whatever path the mapping file had
    (the mapping's path is kept, cut to the field's 100 characters)."""
    from integrations.models import ImportJob

    job = ImportJob.objects.create(
        file_name=Path(path).name[:255],
        kind=kind,
        source=source or "",
        mapping=str(mapping or "")[-100:],
        atomic=atomic,
        status=JobStatus.RUNNING,
        started_at=timezone.now(),
    )
    this = ImportJob.objects.filter(pk=job.pk)
    try:
        summary = import_file(
            path,
            kind,
            source=source,
            mapping=mapping,
            atomic=atomic,
            delimiter=delimiter,
            id_column=id_column,
        )
    except Exception as exc:
        job_fail(this, f"internal error: {type(exc).__name__}")
        raise
    _job_finish_with(this, summary, 0)
    return summary


def shipped_mappings() -> list[str]:
    """Names of the mapping files shipped in integrations/mappings/."""
    return sorted(path.stem for path in MAPPINGS_DIR.glob("*.json"))


def import_job_create(
    upload: Any,
    *,
    kind: Kind,
    user: Any,
    source: str = "",
    mapping: str = "",
    atomic: bool = False,
) -> Any:
    """Store an uploaded file under MEDIA_ROOT/imports/ and queue its ImportJob; the import
    task is enqueued after the commit. ``upload`` is a Django UploadedFile."""
    import uuid

    from integrations.models import ImportJob

    suffix = Path(upload.name).suffix.lower()
    if suffix not in (".csv", ".jsonl", ".ndjson", ".json"):
        suffix = ".csv"
    relative = Path("imports") / f"{uuid.uuid4().hex}{suffix}"
    target = Path(settings.MEDIA_ROOT) / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("wb") as handle:
        for chunk in upload.chunks():
            handle.write(chunk)
    with transaction.atomic():
        job = ImportJob.objects.create(
            file_name=Path(upload.name).name[:255],
            stored_path=str(relative),
            kind=kind,
            source=source,
            mapping=mapping,
            atomic=atomic,
            created_by=user if getattr(user, "is_authenticated", False) else None,
        )
        # A broker outage leaves the job queued, saying it will start when the worker is
        # reachable; the jobs sweep sends it once the broker is back. Never a 500.
        dispatch(
            IMPORT_TASK,
            [job.pk],
            jobs=ImportJob.objects.filter(pk=job.pk),
            unreachable=UNREACHABLE_KEEP,
        )
    logger.info("import.job.queued job=%s kind=%s", job.pk, kind)
    return job
