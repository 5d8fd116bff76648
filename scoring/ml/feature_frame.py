"""The feature frame: the one place training and serving share.

A frame holds, for a chunk of leads and as of a cut-off time:

- lead fields and custom attributes: numbers as numbers (NaN when missing), text as categories
  (case-folded and trimmed; missing - None, empty, or one of `MISSING_TEXT` such as the
  "Select" placeholder of CRM exports - is its own value `__missing__`);
- persona and email domain type (`scoring.engine.email_domain_type`) as categories;
- behaviour aggregates per event type over `WINDOWS` (7/30/90 days): count, decayed sum
  (half-life = half the window) and days since the last event of the type, plus days since
  the last activity of any type and the lead's age in days. Only events at or before the
  cut-off count.

Never features (`FORBIDDEN_COLUMNS`): the lifecycle stage and its times, the owner, the score,
band, breakdown, model probability, revenue (known only after a sale) and identifiers; nor any
attribute a mapping under `integrations/mappings/` names as leakage or label, nor the keys
the caller excludes, nor attributes that are identifiers (almost one distinct value per lead).

Categories are coded with a vocabulary fitted on training leads only (`fit_vocabularies`):
values seen at least `min_count` times keep their own code (at most `MAX_CATEGORIES` per
feature), the rest are grouped as `__other__`, as are values first seen at serving time.
The encoded matrix (`encode`) is float64: numbers first, then category codes, so a whole
scikit-learn pipeline takes it directly and 1,000,000 leads stay a few hundred MB.

Reads are set-based. Training reads the lead columns of a chunk with one query and the events
of all its leads in one pass (the one event reader, `scoring.event_reader`: PostgreSQL packs each
chunk's events, grouped by lead and type, as fixed-size binary records in two `bytea`s),
aggregated by the engine's one aggregation (`aggregate_coded_events`), as rule scoring does.
Serving (`MatrixReader`) builds the model's input matrix directly, per chunk of ids; its output
is tested to equal training's encoding exactly.
Attributes keep their current values: the database has no attribute history, so an attribute
set after the cut-off is read as it is now (the mappings' leakage lists exist for exactly the
attributes where that matters)."""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from operator import itemgetter
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings
from django.db import connection
from numpy.dtypes import StringDType

from leadscoring.db import db_datetime, epoch_seconds_sql, fetch_binary, is_postgres
from scoring.engine import CodedEvents, EventTerm, aggregate_coded_events, email_domain_type
from scoring.event_reader import (
    EventRows,
    fetch_packed,
    packed_events_sql,
    unpack_events,
)

WINDOWS: tuple[int, ...] = (7, 30, 90)
MAX_EVENT_TYPES = 20
MAX_CATEGORIES = 50
MISSING = "__missing__"
OTHER = "__other__"
# Codes 0 and 1 are reserved; vocabulary value i has code i + 2.
MISSING_CODE = 0
OTHER_CODE = 1
# Texts that mean "not filled in". "select" is the unfilled dropdown of CRM web forms (the
# X Education export is full of it); treating it as a value would make "did not answer" look
# like an answer.
MISSING_TEXT = frozenset({"", "nan", "null", "n/a", "select"})

NUMERIC_FIELDS: tuple[str, ...] = ("employees",)
TEXT_FIELDS: tuple[str, ...] = ("title", "industry", "country", "source")
DERIVED_CATEGORIES: tuple[str, ...] = ("persona", "email_domain_type")
FORBIDDEN_COLUMNS = frozenset(
    {
        "id",
        "email",
        "first_name",
        "last_name",
        "company",
        "owner",
        "owner_id",
        "lifecycle_stage",
        "created_at",
        "updated_at",
        "mql_at",
        "sql_at",
        "opportunity_at",
        "converted_at",
        "disqualified_at",
        "lost_at",
        "revenue",
        "score",
        "band",
        "breakdown",
        "model_probability",
        "rule_set_version",
        "scored_at",
        "qualified",
    }
)
MAPPINGS_DIR = Path(settings.BASE_DIR) / "integrations" / "mappings"
ATTRIBUTE_SAMPLE = 20000
# An attribute with at least this share of distinct values among the leads that have it is an
# identifier (lead numbers, prospect ids), not a feature.
IDENTIFIER_SHARE = 0.95
SECONDS_PER_DAY = 86400.0
# The creation's calendar, in UTC: values that do not depend on when the data was cut.
CALENDAR_FEATURES: tuple[str, ...] = ("created_weekday", "created_hour", "created_month")


@dataclass(frozen=True)
class NumericFeature:
    name: str
    source: str  # "field" or "attribute"
    key: str


@dataclass(frozen=True)
class CategoricalFeature:
    name: str
    source: str  # "field", "attribute" or "derived"
    key: str
    vocabulary: tuple[str, ...] = ()


@dataclass(frozen=True)
class FeatureSpec:
    """What a model reads. Stored with the model (as `to_dict()`), so serving builds exactly
    the columns, in the order and with the category codes, that training used."""

    numeric: tuple[NumericFeature, ...]
    categorical: tuple[CategoricalFeature, ...]
    event_types: tuple[str, ...]
    windows: tuple[int, ...] = WINDOWS
    excluded: tuple[str, ...] = ()
    # Time-honest features (None on models trained before them: uncapped ages, no calendar).
    # Lead age and the days since an activity are capped here, so a lead's value stops
    # depending on how long before the cut-off it was created, and the creation's calendar
    # (weekday, hour, month) is added.
    age_cap_days: float | None = None
    # Behaviour columns left out (`--exclude`, the range-overlap check, the leakage guard).
    dropped: tuple[str, ...] = ()
    # (feature, reason) for every feature left out, for the report.
    exclusions: tuple[tuple[str, str], ...] = ()

    @property
    def all_behaviour_names(self) -> list[str]:
        """Every behaviour column `aggregate_behaviour` computes, dropped ones included."""
        names = ["lead_age_days", "days_since_last_activity"]
        for event_type in self.event_types:
            names += [f"events.{event_type}.count_{w}d" for w in self.windows]
            names += [f"events.{event_type}.decayed_{w}d" for w in self.windows]
            names.append(f"events.{event_type}.days_since_last")
        if self.age_cap_days is not None:
            names += list(CALENDAR_FEATURES)
        return names

    @property
    def behaviour_names(self) -> list[str]:
        dropped = set(self.dropped)
        return [name for name in self.all_behaviour_names if name not in dropped]

    @property
    def numeric_names(self) -> list[str]:
        return [f.name for f in self.numeric] + self.behaviour_names

    @property
    def names(self) -> list[str]:
        return self.numeric_names + [f.name for f in self.categorical]

    @property
    def categorical_mask(self) -> np.ndarray:
        return np.array(
            [False] * len(self.numeric_names) + [True] * len(self.categorical), dtype=bool
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "numeric": [vars(f) for f in self.numeric],
            "categorical": [
                {**vars(f), "vocabulary": list(f.vocabulary)} for f in self.categorical
            ],
            "event_types": list(self.event_types),
            "windows": list(self.windows),
            "excluded": list(self.excluded),
            "age_cap_days": self.age_cap_days,
            "dropped": list(self.dropped),
            "exclusions": [list(pair) for pair in self.exclusions],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureSpec:
        return cls(
            numeric=tuple(NumericFeature(**f) for f in data["numeric"]),
            categorical=tuple(
                CategoricalFeature(
                    name=f["name"],
                    source=f["source"],
                    key=f["key"],
                    vocabulary=tuple(f.get("vocabulary", ())),
                )
                for f in data["categorical"]
            ),
            event_types=tuple(data["event_types"]),
            windows=tuple(data.get("windows", WINDOWS)),
            excluded=tuple(data.get("excluded", ())),
            age_cap_days=data.get("age_cap_days"),
            dropped=tuple(data.get("dropped", ())),
            exclusions=tuple(tuple(pair) for pair in data.get("exclusions", ())),
        )


@dataclass(eq=False)
class RawFrame:
    """A chunk's features before category coding: `numeric` float (n, p_num) in
    `spec.numeric_names` order, `categorical` object (n, p_cat) of normalised texts."""

    ids: np.ndarray
    numeric: np.ndarray
    categorical: np.ndarray
    persona: np.ndarray = field(repr=False)

    @property
    def n(self) -> int:
        return int(self.ids.shape[0])

    def take(self, rows: np.ndarray) -> RawFrame:
        return RawFrame(
            self.ids[rows], self.numeric[rows], self.categorical[rows], self.persona[rows]
        )

    @staticmethod
    def concat(frames: list[RawFrame], spec: FeatureSpec) -> RawFrame:
        if not frames:
            return RawFrame(
                np.zeros(0, dtype=np.int64),
                np.zeros((0, len(spec.numeric_names))),
                np.empty((0, len(spec.categorical)), dtype=object),
                np.empty(0, dtype=object),
            )
        return RawFrame(
            np.concatenate([f.ids for f in frames]),
            np.concatenate([f.numeric for f in frames]),
            np.concatenate([f.categorical for f in frames]),
            np.concatenate([f.persona for f in frames]),
        )


# ---------------------------------------------------------------------------------------------
# Leakage and exclusions


def normalise_key(key: str) -> str:
    """Compare column names loosely: "Lead Quality", "lead_quality" and "LEAD-QUALITY" match."""
    return re.sub(r"[^0-9a-z]+", "_", key.casefold()).strip("_")


def mapping_exclusions(
    directory: Path | None = None, *, include_doubtful: bool = False
) -> set[str]:
    """Every column that any mapping under `integrations/mappings/` names as leakage or as
    the label, and as doubtful unless `include_doubtful` (and, where the mapping renames it,
    the name it is stored under)."""
    directory = directory or MAPPINGS_DIR
    names: set[str] = set()
    if not directory.is_dir():
        return names
    for path in sorted(directory.glob("*.json")):
        try:
            document = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(document, dict):
            names |= _document_exclusions(document, include_doubtful)
    return names


def _document_exclusions(document: dict[str, Any], include_doubtful: bool = False) -> set[str]:
    names: set[str] = set()
    for key in ("leakage",) if include_doubtful else ("leakage", "doubtful"):
        listed = document.get(key) or []
        if isinstance(listed, dict):
            listed = list(listed)
        names |= {str(item) for item in listed if isinstance(item, str)}
    label = document.get("label")
    if isinstance(label, str):
        names.add(label)
    elif isinstance(label, dict):
        names |= {str(v) for k, v in label.items() if k in ("column", "field", "source")}
    # Renames: where a leakage column is stored under another name, exclude that name too.
    for key in ("columns", "fields", "mapping", "rename"):
        renames = document.get(key)
        if isinstance(renames, dict):
            for source, target in renames.items():
                if source in names and isinstance(target, str):
                    names.add(target.removeprefix("attributes."))
    return names


def excluded_keys(exclude: Iterable[str] = (), *, include_doubtful: bool = False) -> set[str]:
    """Normalised names that may never be features: the caller's, the leakage and label
    columns of the mappings in `integrations/mappings/` (and their doubtful ones unless opted
    in), and the forbidden lead columns."""
    names = set(exclude) | mapping_exclusions(include_doubtful=include_doubtful) | FORBIDDEN_COLUMNS
    return {normalise_key(name.removeprefix("attributes.")) for name in names}


# ---------------------------------------------------------------------------------------------
# Discovering what to read


def discover_spec(
    cutoff: dt.datetime,
    *,
    exclude: Iterable[str] = (),
    include_doubtful: bool = False,
    reasons: dict[str, str] | None = None,
) -> FeatureSpec:
    """The features the data supports: numeric and text attributes (from a sample of up to
    ATTRIBUTE_SAMPLE leads), the MAX_EVENT_TYPES most frequent event types before `cutoff`,
    the fixed lead fields, and the time-honest behaviour columns. Vocabularies are empty until
    `fit_vocabularies`.

    Any feature can be excluded (`exclude`): a field, an attribute (with or without
    `attributes.`), a behaviour column (`lead_age_days`, `events.TYPE.count_7d`), a whole event
    type (`events.TYPE`), `persona` or `email_domain_type`. `reasons` maps further names to
    the reason they are excluded (a connector's outcome fields, an import's mapping); every
    exclusion is in the spec's `exclusions` with its reason."""
    reasons = dict(reasons or {})
    by_caller = {normalise_key(name.removeprefix("attributes.")) for name in exclude}
    because = {
        normalise_key(name.removeprefix("attributes.")): why for name, why in reasons.items()
    }
    from_mappings = {
        normalise_key(name.removeprefix("attributes."))
        for name in mapping_exclusions(include_doubtful=include_doubtful)
    }
    forbidden = excluded_keys([*exclude, *reasons], include_doubtful=include_doubtful)
    exclusions: list[tuple[str, str]] = []

    def reason(name: str) -> str:
        key = normalise_key(name.removeprefix("attributes."))
        if key in by_caller:
            return "excluded by --exclude"
        if key in because:
            return because[key]
        if key in from_mappings:
            return "a mapping lists it as leakage, label or doubtful"
        return "never a feature (outcome, identifier or owner)"

    def allowed(feature_name: str, key: str) -> bool:
        if normalise_key(key) in forbidden or normalise_key(feature_name) in forbidden:
            exclusions.append((feature_name, reason(key)))
            return False
        return True

    numeric: list[NumericFeature] = [
        NumericFeature(name, "field", name) for name in NUMERIC_FIELDS if allowed(name, name)
    ]
    categorical: list[CategoricalFeature] = [
        CategoricalFeature(name, "field", name) for name in TEXT_FIELDS if allowed(name, name)
    ]
    excluded: list[str] = []
    for key, kind in _attribute_kinds():
        if not allowed(f"attributes.{key}", key):
            excluded.append(key)
            continue
        if kind == "identifier":
            excluded.append(key)
            exclusions.append((f"attributes.{key}", "an identifier (a distinct value per lead)"))
        elif kind == "number":
            numeric.append(NumericFeature(f"attributes.{key}", "attribute", key))
        else:
            categorical.append(CategoricalFeature(f"attributes.{key}", "attribute", key))
    categorical += [
        CategoricalFeature(name, "derived", name)
        for name in DERIVED_CATEGORIES
        if allowed(name, name)
    ]
    event_types = [
        event_type
        for event_type in _frequent_event_types(cutoff)
        if allowed(f"events.{event_type}", f"events.{event_type}")
    ]
    spec = FeatureSpec(
        numeric=tuple(numeric),
        categorical=tuple(categorical),
        event_types=tuple(event_types),
        excluded=tuple(sorted(excluded)),
        age_cap_days=float(max(WINDOWS)),
    )
    dropped = [name for name in spec.all_behaviour_names if not allowed(name, name)]
    return replace(spec, dropped=tuple(dropped), exclusions=tuple(exclusions))


def drop_features(spec: FeatureSpec, drops: dict[str, str]) -> FeatureSpec:
    """`spec` without the features named in `drops` (feature name -> reason), each recorded
    in `exclusions` with its reason. Project frames read with the old spec with `project`."""
    if not drops:
        return spec
    behaviour = set(spec.all_behaviour_names)
    return replace(
        spec,
        numeric=tuple(f for f in spec.numeric if f.name not in drops),
        categorical=tuple(f for f in spec.categorical if f.name not in drops),
        dropped=(*spec.dropped, *(name for name in drops if name in behaviour)),
        excluded=(
            *spec.excluded,
            *(f.key for f in spec.numeric if f.name in drops and f.source == "attribute"),
            *(f.key for f in spec.categorical if f.name in drops and f.source == "attribute"),
        ),
        exclusions=(*spec.exclusions, *drops.items()),
    )


def _attribute_kinds() -> list[tuple[str, str]]:
    """(key, "number" | "text" | "identifier") for attributes present on at least 1 % of the
    sampled leads, in key order."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*), MIN(id) FROM scoring_lead")
        count, low = cursor.fetchone()
        if not count:
            return []
        stride = max(1, count // ATTRIBUTE_SAMPLE)
        cursor.execute(
            "SELECT attributes FROM scoring_lead WHERE (id - %s) %% %s = 0 ORDER BY id LIMIT %s",
            [low, stride, ATTRIBUTE_SAMPLE],
        )
        documents = [_json_object(row[0]) for row in cursor.fetchall()]
    present: Counter[str] = Counter()
    numbers: Counter[str] = Counter()
    distinct: dict[str, set[str]] = {}
    continuous: set[str] = set()  # has a fractional number: a measurement, never an id
    for document in documents:
        for key, value in document.items():
            if _is_missing(value):
                continue
            present[key] += 1
            if _as_number(value) is not None:
                numbers[key] += 1
            seen = distinct.setdefault(key, set())
            seen.add(str(value).strip().casefold())
            if not _is_whole(value):
                continuous.add(key)
    kinds = []
    floor = max(1, math.ceil(0.01 * len(documents)))
    for key in sorted(present):
        n = present[key]
        if n < floor:
            continue
        if n >= 50 and key not in continuous and len(distinct[key]) >= IDENTIFIER_SHARE * n:
            kinds.append((key, "identifier"))
        elif numbers[key] >= 0.9 * n:
            kinds.append((key, "number"))
        else:
            kinds.append((key, "text"))
    return kinds


def _frequent_event_types(cutoff: dt.datetime) -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT event_type, COUNT(*) FROM scoring_event WHERE occurred_at <= %s "
            "GROUP BY event_type ORDER BY COUNT(*) DESC, event_type LIMIT %s",
            [db_datetime(cutoff), MAX_EVENT_TYPES],
        )
        return sorted(row[0] for row in cursor.fetchall())


# ---------------------------------------------------------------------------------------------
# Reading a chunk


def lead_id_range() -> tuple[int, int] | None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT MIN(id), MAX(id) FROM scoring_lead")
        low, high = cursor.fetchone()
    return None if low is None else (int(low), int(high))


def id_ranges(chunk_size: int) -> list[tuple[int, int]]:
    """Inclusive id ranges of about `chunk_size` ids covering every lead."""
    bounds = lead_id_range()
    if bounds is None:
        return []
    low, high = bounds
    return [(s, min(s + chunk_size - 1, high)) for s in range(low, high + 1, chunk_size)]


def read_frame(
    spec: FeatureSpec,
    cutoff: dt.datetime,
    first_id: int,
    last_id: int,
    *,
    ids: np.ndarray | None = None,
    events: EventRows | None = None,
) -> RawFrame:
    """The raw features of the leads with ids in [first_id, last_id] (only those in `ids`
    when given) as of `cutoff`, ordered by id: one query for lead columns, one for the events
    (unless the caller already read them in bulk, `events`), aggregated in NumPy."""
    lead_ids = None if ids is None else np.asarray(ids, dtype=np.int64)
    if lead_ids is not None:
        lead_ids = lead_ids[(lead_ids >= first_id) & (lead_ids <= last_id)]
        if lead_ids.size == 0:
            return RawFrame.concat([], spec)
    raw, created = _read_lead_columns(spec, first_id, last_id, lead_ids)
    if raw.n:
        if events is None:
            events = read_events(spec, cutoff, first_id, last_id, lead_ids)
        aggregate_behaviour(
            spec, raw.numeric[:, len(spec.numeric) :], raw.ids, created, cutoff, events
        )
    return raw


def iter_frames(
    spec: FeatureSpec,
    cutoff: dt.datetime,
    chunk_size: int = 50000,
    *,
    ids: np.ndarray | None = None,
) -> Iterator[RawFrame]:
    """Every lead's raw features (only those in `ids`, ascending, when given) in id-range
    chunks. The events are read for all chunks in one pass first (`read_events_bulk`): the
    events table is not ordered by lead, so a query per chunk would scan all of it each time."""
    ranges = id_ranges(chunk_size)
    if not ranges:
        return
    per_chunk = read_events_bulk(spec, cutoff, ranges[0][0], chunk_size, ids=ids)
    for k, (first_id, last_id) in enumerate(ranges):
        packed = per_chunk.pop(k, None)  # unpacked one chunk at a time, to bound memory
        if packed is None:
            events = EventRows.empty()
        elif isinstance(packed, EventRows):
            events = packed
        else:
            events = unpack_events(packed)
        frame = read_frame(spec, cutoff, first_id, last_id, ids=ids, events=events)
        if frame.n:
            yield frame


def _fetch_lead_columns(
    spec: FeatureSpec, first_id: int, last_id: int, lead_ids: np.ndarray | None
) -> tuple[list[list], dict[tuple[str, str], int]]:
    """The chunk's lead rows (ordered by id) as columns: 0 id, 1 creation epoch, 2 email,
    3 persona, then the fields and attributes the spec reads, at the positions the returned
    mapping gives for (source, key)."""
    postgres = is_postgres()
    attribute_keys = sorted(
        {f.key for f in spec.numeric if f.source == "attribute"}
        | {f.key for f in spec.categorical if f.source == "attribute"}
    )
    field_names = [f.key for f in spec.numeric if f.source == "field"] + [
        f.key for f in spec.categorical if f.source == "field"
    ]
    epoch = epoch_seconds_sql("created_at")
    select = ["id", epoch, "email", "persona"] + [f'"{name}"' for name in field_names]
    params: list[Any] = []
    for key in attribute_keys:
        if postgres:
            select.append("attributes ->> %s")
            params.append(key)
        else:
            path = "$." + json.dumps(key)
            select.append(
                "CASE json_type(attributes, %s) WHEN 'true' THEN 'true' WHEN 'false' THEN "
                "'false' ELSE json_extract(attributes, %s) END"
            )
            params += [path, path]
    where, where_params = _lead_filter("id", first_id, last_id, lead_ids, postgres)
    sql = f"SELECT {', '.join(select)} FROM scoring_lead WHERE {where} ORDER BY id"
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, *where_params])
        rows = cursor.fetchall()
    # Column by column with itemgetter: zip(*rows) over 50,000 rows took five times longer.
    columns = [list(map(itemgetter(j), rows)) for j in range(len(select))]
    position = {("field", name): 4 + offset for offset, name in enumerate(field_names)}
    base = 4 + len(field_names)
    position |= {("attribute", key): base + offset for offset, key in enumerate(attribute_keys)}
    return columns, position


def _read_lead_columns(
    spec: FeatureSpec, first_id: int, last_id: int, lead_ids: np.ndarray | None
) -> tuple[RawFrame, np.ndarray]:
    """The lead-column features (behaviour columns left as zeros) and creation epochs."""
    columns, position = _fetch_lead_columns(spec, first_id, last_id, lead_ids)
    ids = np.asarray(columns[0], dtype=np.int64)
    created = np.asarray(columns[1], dtype=np.float64)
    n = ids.shape[0]
    numeric = np.zeros((n, len(spec.numeric_names)))
    for j, feature in enumerate(spec.numeric):
        numeric[:, j] = _numbers(columns[position[(feature.source, feature.key)]])
    categorical = np.empty((n, len(spec.categorical)), dtype=object)
    for j, feature in enumerate(spec.categorical):
        values = _category_values(feature, columns, position)
        categorical[:, j] = _texts(values, _text_of(feature))
    persona = _texts(columns[3])
    return RawFrame(ids=ids, numeric=numeric, categorical=categorical, persona=persona), created


_DOMAIN_TYPE = ("derived", "email_domain_type")


def _category_values(
    feature: CategoricalFeature, columns: list[list], position: dict[tuple[str, str], int]
) -> list:
    """The raw values a category feature reads from `_fetch_lead_columns`' columns: for the
    email domain type, each address's part after its last "@" (all the type depends on)."""
    if (feature.source, feature.key) == _DOMAIN_TYPE:
        return [_domain_part(email) for email in columns[2]]
    if feature.source == "derived":  # persona
        return columns[3]
    return columns[position[(feature.source, feature.key)]]


def _text_of(feature: CategoricalFeature) -> Callable[[Any], str]:
    """How a raw value of `_category_values` becomes the feature's normalised text."""
    return _domain_text if (feature.source, feature.key) == _DOMAIN_TYPE else _text


class MatrixReader:
    """Reads chunks of leads straight into the model's input matrix: exactly
    `encode(spec, read_frame(...))`, without the texts in between. Each category column is
    coded through a memo of raw value -> code kept for the reader's life (a scoring run), so a
    value is normalised and looked up once per run, not once per lead (at 1,000,000 leads the
    texts and their `np.unique` cost more than the reads). Not thread-safe: one per thread.

    With `reuse_buffer`, each read returns a view of one buffer that the next read overwrites:
    a chunk's matrix is tens of MB, and fresh memory of that size costs a page fault per 4 kB
    on first touch (a tenth of the read's time)."""

    def __init__(self, spec: FeatureSpec, *, reuse_buffer: bool = False) -> None:
        self.spec = spec
        self._reuse_buffer = reuse_buffer
        self._buffer = np.empty((0, len(spec.names)))
        self._memos = [
            _CodeMemo(category_codes(feature), _text_of(feature)) for feature in spec.categorical
        ]

    def read(
        self,
        cutoff: dt.datetime,
        first_id: int,
        last_id: int,
        *,
        ids: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(lead ids ascending, float64 matrix (n, len(spec.names))) for the leads with ids in
        [first_id, last_id] (only those in `ids` when given) as of `cutoff`."""
        spec = self.spec
        lead_ids = None if ids is None else np.asarray(ids, dtype=np.int64)
        if lead_ids is not None:
            lead_ids = lead_ids[(lead_ids >= first_id) & (lead_ids <= last_id)]
            if lead_ids.size == 0:
                return np.zeros(0, dtype=np.int64), np.zeros((0, len(spec.names)))
        if is_postgres():
            found, created, lead_part = self._lead_part_grouped(first_id, last_id, lead_ids)
        else:
            found, created, lead_part = self._lead_part_rows(first_id, last_id, lead_ids)
        n, p_lead, p_num = found.shape[0], len(spec.numeric), len(spec.numeric_names)
        matrix = self._matrix(n)
        if n == 0:
            return found, matrix
        matrix[:, :p_lead] = lead_part[:, :p_lead]
        matrix[:, p_num:] = lead_part[:, p_lead:]
        events = read_events(spec, cutoff, first_id, last_id, lead_ids)
        aggregate_behaviour(spec, matrix[:, p_lead:p_num], found, created, cutoff, events)
        return found, matrix

    def _matrix(self, n: int) -> np.ndarray:
        if not self._reuse_buffer:
            return np.empty((n, len(self.spec.names)))
        if self._buffer.shape[0] < n:
            self._buffer = np.empty((n, len(self.spec.names)))
        return self._buffer[:n]

    def _lead_part_rows(
        self, first_id: int, last_id: int, lead_ids: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(ids, creation epochs, the lead-column features: numbers then category codes),
        from one row per lead."""
        spec = self.spec
        columns, position = _fetch_lead_columns(spec, first_id, last_id, lead_ids)
        found = np.asarray(columns[0], dtype=np.int64)
        created = np.asarray(columns[1], dtype=np.float64)
        p_lead = len(spec.numeric)
        part = np.empty((found.shape[0], p_lead + len(spec.categorical)))
        for j, feature in enumerate(spec.numeric):
            part[:, j] = _numbers(columns[position[(feature.source, feature.key)]])
        for j, feature in enumerate(spec.categorical):
            part[:, p_lead + j] = self._codes(j, _category_values(feature, columns, position))
        return found, created, part

    def _lead_part_grouped(
        self, first_id: int, last_id: int, lead_ids: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """PostgreSQL: what `_lead_part_rows` returns, from one query whose rows are one packed
        record of (id, creation epoch, numeric fields) per lead in a single `bytea`, then one
        row per distinct value of each category column (and numeric attribute) with the
        positions of the leads that have it: the Python work is per distinct value, not per
        lead (most columns have a few dozen values in 50,000 leads)."""
        spec = self.spec
        p_lead = len(spec.numeric)
        select = ["(row_number() OVER (ORDER BY id) - 1)::int4 AS rn", "id", "created_at"]
        select_params: list[Any] = []
        packed = ["int8send(id)", "float8send(date_part('epoch', created_at))"]
        record: list[tuple[str, str]] = [("id", ">i8"), ("created", ">f8")]
        direct: list[tuple[int, str]] = []  # (part column, record field)
        grouped: list[tuple[int, bool]] = []  # (part column, numeric?)
        for j, feature in enumerate(spec.numeric):
            if feature.source == "field":
                name = f"n{len(direct)}"
                select.append(f'"{feature.key}"::float8 AS {name}')
                packed.append(f"float8send(COALESCE({name}, 'NaN'))")
                record.append((name, ">f8"))
                direct.append((j, name))
            else:
                select.append(f"attributes ->> %s AS g{len(grouped)}")
                select_params.append(feature.key)
                grouped.append((j, True))
        for j, feature in enumerate(spec.categorical):
            if (feature.source, feature.key) == _DOMAIN_TYPE:
                # The part after the last "@" (NULL without one), as `_domain_part` takes it
                # (split_part's negative field counts from the end: PostgreSQL 14+).
                expression = "CASE WHEN strpos(email, '@') > 0 THEN split_part(email, '@', -1) END"
            elif feature.source in ("derived", "field"):  # persona, or a lead field
                expression = f'"{feature.key}"::text'
            else:
                expression = "attributes ->> %s"
                select_params.append(feature.key)
            select.append(f"{expression} AS g{len(grouped)}")
            grouped.append((p_lead + j, False))
        where, where_params = _lead_filter("id", first_id, last_id, lead_ids, True)
        parts = [
            f"WITH chunk AS MATERIALIZED (SELECT {', '.join(select)} FROM scoring_lead "
            f"WHERE {where}) SELECT -1, NULL, string_agg({' || '.join(packed)}, ''::bytea "
            "ORDER BY rn) FROM chunk"
        ]
        parts += [
            f"SELECT {g}, g{g}::text, string_agg(int4send(rn), ''::bytea) FROM chunk GROUP BY 2"
            for g in range(len(grouped))
        ]
        rows = fetch_binary(" UNION ALL ".join(parts), [*select_params, *where_params])
        head = next((data for slot, _, data in rows if slot == -1), None)
        records = np.frombuffer(head or b"", dtype=np.dtype(record))
        found = records["id"].astype(np.int64)
        part = np.empty((found.shape[0], p_lead + len(spec.categorical)))
        for column, name in direct:
            part[:, column] = records[name]
        by_slot: dict[int, list[tuple[Any, bytes]]] = {}
        for slot, value, positions in rows:
            if slot >= 0:
                by_slot.setdefault(slot, []).append((value, positions))
        for slot, (column, numeric) in enumerate(grouped):
            entries = by_slot.get(slot, [])
            values = [value for value, _ in entries]
            coded = _numbers(values) if numeric else self._codes(column - p_lead, values)
            positions = np.frombuffer(b"".join(data for _, data in entries), dtype=">i4")
            counts = [len(data) // 4 for _, data in entries]
            part[positions, column] = np.repeat(coded, counts)
        return found, records["created"].astype(np.float64), part

    def _codes(self, j: int, values: list) -> np.ndarray:
        memo = self._memos[j]
        try:
            return np.fromiter(map(memo.__getitem__, values), dtype=np.float64, count=len(values))
        except TypeError:  # an unhashable value (a JSON list on SQLite): no memo
            return np.array([memo.code(v) for v in values], dtype=np.float64)


class _CodeMemo(dict):
    """Raw value -> category code, computed on a value's first lookup."""

    def __init__(self, lookup: dict[str, float], text_of: Callable[[Any], str]) -> None:
        super().__init__()
        self.lookup = lookup
        self.text_of = text_of

    def code(self, value: Any) -> float:
        return self.lookup.get(self.text_of(value), OTHER_CODE)

    def __missing__(self, value: Any) -> float:
        code = self[value] = self.code(value)
        return code


def _lead_filter(
    column: str, first_id: int, last_id: int, lead_ids: np.ndarray | None, postgres: bool
) -> tuple[str, list[Any]]:
    if lead_ids is None:
        return f"{column} BETWEEN %s AND %s", [int(first_id), int(last_id)]
    if postgres:
        return f"{column} = ANY(%s::bigint[])", [lead_ids.tolist()]
    # One parameter however many ids (SQLite limits the number of parameters).
    return f"{column} IN (SELECT value FROM json_each(%s))", [json.dumps(lead_ids.tolist())]


# ---------------------------------------------------------------------------------------------
# Behaviour: events read by the one event reader (`scoring.event_reader`) and aggregated by the
# engine's one aggregation, the same code for one lead, a chunk, or the whole table.


def read_events(
    spec: FeatureSpec,
    cutoff: dt.datetime,
    first_id: int,
    last_id: int,
    lead_ids: np.ndarray | None = None,
) -> EventRows:
    """The events at or before `cutoff` of the leads in [first_id, last_id] (in `lead_ids`)."""
    postgres = is_postgres()
    where, where_params = _lead_filter("lead_id", first_id, last_id, lead_ids, postgres)
    if postgres:
        # For an id range, the lead/type/time index answers this by an index-only scan.
        sql = packed_events_sql("0", where)
        packed = fetch_packed(sql, [list(spec.event_types), *where_params, cutoff])
        return unpack_events(packed[0]) if packed else EventRows.empty()
    codes = {t: i + 1 for i, t in enumerate(spec.event_types)}
    sql = (
        "SELECT lead_id, event_type, (julianday(occurred_at) - 2440587.5) * 86400.0 "
        f"FROM scoring_event WHERE {where} AND julianday(occurred_at) <= julianday(%s)"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*where_params, db_datetime(cutoff)])
        rows = cursor.fetchall()
    if not rows:
        return EventRows.empty()
    lead, kind, epoch = zip(*rows, strict=True)
    return EventRows(
        np.asarray(lead, dtype=np.int64),
        np.asarray([codes.get(k, 0) for k in kind], dtype=np.int16),
        np.asarray(epoch, dtype=np.float64),
        np.zeros((len(rows), 0), dtype=np.int64),
    )


def read_events_bulk(
    spec: FeatureSpec,
    cutoff: dt.datetime,
    low: int,
    chunk_size: int,
    *,
    ids: np.ndarray | None = None,
) -> dict[int, EventRows | tuple[bytes, bytes]]:
    """Every event at or before `cutoff` (of the leads in `ids` when given), in one pass over
    the events table, split by the id-range chunk (of `chunk_size` ids from `low`) its lead
    falls in; on PostgreSQL each chunk's events are still packed (`unpack_events`)."""
    lead_ids = None if ids is None else np.asarray(ids, dtype=np.int64)
    if not is_postgres():
        bounds = lead_id_range()
        if bounds is None:
            return {}
        events = read_events(spec, cutoff, bounds[0], bounds[1], lead_ids)
        bucket = (events.lead_ids - low) // chunk_size
        return {
            int(k): EventRows(
                events.lead_ids[bucket == k],
                events.codes[bucket == k],
                events.epochs[bucket == k],
                events.bits[bucket == k],
            )
            for k in np.unique(bucket).tolist()
        }
    where, where_params = (
        ("TRUE", []) if lead_ids is None else ("lead_id = ANY(%s::bigint[])", [lead_ids.tolist()])
    )
    sql = packed_events_sql("(lead_id - %s::bigint) / %s::bigint", where)
    return fetch_packed(sql, [low, chunk_size, list(spec.event_types), *where_params, cutoff])


def aggregate_behaviour(
    spec: FeatureSpec,
    out: np.ndarray,
    ids: np.ndarray,
    created: np.ndarray,
    cutoff: dt.datetime,
    events: EventRows,
) -> None:
    """Fill `out` (n, len(behaviour_names)) for the leads `ids` (ascending) from their
    events; events of other leads, or after the cut-off, are ignored. With the spec's
    `age_cap_days`, ages and days since an activity are capped at it and the calendar
    columns follow; dropped columns are computed and left out."""
    names = spec.all_behaviour_names
    if spec.dropped:
        full = np.empty((ids.shape[0], len(names)))
        _aggregate_all(spec, full, ids, created, cutoff, events)
        dropped = set(spec.dropped)
        out[:] = full[:, [j for j, name in enumerate(names) if name not in dropped]]
    else:
        _aggregate_all(spec, out, ids, created, cutoff, events)


def _aggregate_all(
    spec: FeatureSpec,
    out: np.ndarray,
    ids: np.ndarray,
    created: np.ndarray,
    cutoff: dt.datetime,
    events: EventRows,
) -> None:
    _aggregate_events(spec, out, ids, created, cutoff, events)
    if spec.age_cap_days is None:
        return
    per_type = 2 * len(spec.windows) + 1
    days = [0, 1] + [2 + t * per_type + per_type - 1 for t in range(len(spec.event_types))]
    out[:, days] = np.minimum(out[:, days], spec.age_cap_days)
    calendar = out.shape[1] - len(CALENDAR_FEATURES)
    out[:, calendar : calendar + len(CALENDAR_FEATURES)] = calendar_columns(created)


def calendar_columns(created: np.ndarray) -> np.ndarray:
    """(n, 3): weekday (0 = Monday), hour and month (1-12) of each creation epoch, in UTC."""
    seconds = np.floor(np.asarray(created, dtype=np.float64))
    out = np.empty((seconds.shape[0], len(CALENDAR_FEATURES)))
    day = np.floor_divide(seconds, SECONDS_PER_DAY)
    out[:, 0] = np.mod(day + 3, 7)  # 1970-01-01 was a Thursday
    out[:, 1] = np.floor_divide(np.mod(seconds, SECONDS_PER_DAY), 3600)
    months = seconds.astype("datetime64[s]").astype("datetime64[M]").astype(np.int64)
    out[:, 2] = np.mod(months, 12) + 1
    return out


def _aggregate_events(
    spec: FeatureSpec,
    out: np.ndarray,
    ids: np.ndarray,
    created: np.ndarray,
    cutoff: dt.datetime,
    events: EventRows,
) -> None:
    n = ids.shape[0]
    cutoff_epoch = cutoff.timestamp()
    out[:, 0] = (cutoff_epoch - created) / SECONDS_PER_DAY
    per_type = 2 * len(spec.windows) + 1
    n_types = len(spec.event_types)
    # Never active (overall or for a type): days since creation, as the inactivity rule reads
    # it; the zero counts say "never". No NaN here, so every behaviour column is usable.
    out[:, 1] = out[:, 0]
    out[:, 2:] = 0.0
    for t in range(n_types):
        out[:, 2 + t * per_type + per_type - 1] = out[:, 0]
    if n == 0 or events.lead_ids.size == 0:
        return
    position = np.searchsorted(ids, events.lead_ids)
    inside = (position < n) & (ids[np.minimum(position, n - 1)] == events.lead_ids)
    coded = CodedEvents(
        position[inside], events.codes[inside], events.epochs[inside], events.bits[inside]
    )
    # Per type, per window: the count and the decayed sum with a half-life of half the window.
    terms = [
        EventTerm(type_code=t + 1, window_days=w, half_life_days=w / 2.0)
        for t in range(n_types)
        for w in spec.windows
    ]
    aggregated = aggregate_coded_events(terms, coded, n, cutoff_epoch, n_types=n_types)
    seen = ~np.isnan(aggregated.last_epoch)
    out[seen, 1] = (cutoff_epoch - aggregated.last_epoch[seen]) / SECONDS_PER_DAY
    n_windows = len(spec.windows)
    for t in range(n_types):
        base = 2 + t * per_type
        columns = slice(t * n_windows, (t + 1) * n_windows)
        out[:, base : base + n_windows] = aggregated.counts[:, columns]
        out[:, base + n_windows : base + 2 * n_windows] = aggregated.decayed[:, columns]
        last = aggregated.last_epoch_by_type[:, t]
        typed = ~np.isnan(last)
        out[typed, base + per_type - 1] = (cutoff_epoch - last[typed]) / SECONDS_PER_DAY


# ---------------------------------------------------------------------------------------------
# Category coding


def fit_spec(spec: FeatureSpec, raw: RawFrame, min_count: int) -> FeatureSpec:
    """The spec fitted on `raw` (training leads): numeric fields and attributes that are
    missing on every training lead are dropped (they carry nothing, and gradient boosting
    cannot bin an all-missing column), and each categorical feature gets its vocabulary:
    values seen at least `min_count` times, the MAX_CATEGORIES most frequent at most."""
    numeric = tuple(
        feature
        for j, feature in enumerate(spec.numeric)
        if raw.n and np.isfinite(raw.numeric[:, j]).any()
    )
    dropped = [f.name for f in spec.numeric if f not in numeric]
    spec = replace(
        spec,
        numeric=numeric,
        excluded=(*spec.excluded, *dropped),
        exclusions=(
            *spec.exclusions,
            *((name, "missing on every training lead") for name in dropped),
        ),
    )
    return fit_vocabularies(spec, raw, min_count)


def project(raw: RawFrame, source: FeatureSpec, target: FeatureSpec) -> RawFrame:
    """`raw` (read with `source`) restricted to the columns `target` keeps."""
    position = {name: j for j, name in enumerate(source.numeric_names)}
    columns = [position[name] for name in target.numeric_names]
    kept = {f.name for f in target.categorical}
    categories = [j for j, f in enumerate(source.categorical) if f.name in kept]
    return RawFrame(raw.ids, raw.numeric[:, columns], raw.categorical[:, categories], raw.persona)


def fit_vocabularies(spec: FeatureSpec, raw: RawFrame, min_count: int) -> FeatureSpec:
    """The spec with each categorical feature's vocabulary fitted on `raw` (training leads):
    values seen at least `min_count` times, the MAX_CATEGORIES most frequent at most."""
    fitted = []
    for j, feature in enumerate(spec.categorical):
        counts = Counter(raw.categorical[:, j].tolist())
        counts.pop(MISSING, None)
        frequent = [v for v, c in counts.most_common(MAX_CATEGORIES) if c >= min_count]
        fitted.append(replace(feature, vocabulary=tuple(sorted(frequent))))
    return replace(spec, categorical=tuple(fitted))


def encode(spec: FeatureSpec, raw: RawFrame) -> np.ndarray:
    """The model input: float64 (n, len(spec.names)); numbers then category codes (0 missing,
    1 other/rare/unseen, 2 + i for vocabulary value i). Each column is coded once per
    distinct value (np.unique), not once per lead."""
    p_num = len(spec.numeric_names)
    matrix = np.empty((raw.n, p_num + len(spec.categorical)), dtype=np.float64)
    matrix[:, :p_num] = raw.numeric
    for j, feature in enumerate(spec.categorical):
        lookup = category_codes(feature)
        if raw.n == 0:
            continue
        # StringDType, not astype(str): a fixed-width array is as wide as the longest text
        # for every lead (one long free-text value made gigabytes at 1M leads).
        values, inverse = np.unique(
            np.asarray(raw.categorical[:, j], dtype=StringDType()), return_inverse=True
        )
        codes = np.array([lookup.get(v, OTHER_CODE) for v in values.tolist()], dtype=np.float64)
        matrix[:, p_num + j] = codes[inverse.reshape(-1)]
    return matrix


def category_codes(feature: CategoricalFeature) -> dict[str, float]:
    """Normalised text -> code; a text not in it (rare or unseen) is OTHER_CODE."""
    lookup = {value: float(i + 2) for i, value in enumerate(feature.vocabulary)}
    lookup[MISSING] = MISSING_CODE
    return lookup


def category_label(feature: CategoricalFeature, code: int) -> str:
    if code == MISSING_CODE:
        return MISSING
    if code == OTHER_CODE or code - 2 >= len(feature.vocabulary):
        return OTHER
    return feature.vocabulary[code - 2]


# ---------------------------------------------------------------------------------------------
# Value helpers


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and value != value:
        return True
    return isinstance(value, str) and value.strip().casefold() in MISSING_TEXT


def _is_whole(value: Any) -> bool:
    number = _as_number(value)
    return number is None or float(number).is_integer()


def _as_number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def _numbers(values: Iterable[Any]) -> np.ndarray:
    cache: dict[Any, float] = {}
    out = []
    for value in values:
        if value is None:
            out.append(np.nan)
            continue
        if isinstance(value, float | int) and not isinstance(value, bool):
            out.append(float(value))
            continue
        number = cache.get(value)
        if number is None:
            parsed = _as_number(value)
            number = np.nan if parsed is None else parsed
            cache[value] = number
        out.append(number)
    return np.asarray(out, dtype=np.float64)


def _text(value: Any) -> str:
    """A category value's normalised text (MISSING for a missing one)."""
    if _is_missing(value):
        return MISSING
    try:
        hash(value)
    except TypeError:  # unhashable (a JSON list or object): its canonical text
        return json.dumps(value, sort_keys=True).casefold()
    return _normalise_text(value)


def _domain_part(email: Any) -> str | None:
    """The part of an address after its last "@" (None without one): all its domain type
    depends on."""
    return email.rpartition("@")[2] if isinstance(email, str) and "@" in email else None


def _domain_text(domain: str | None) -> str:
    """email_domain_type's text for an address whose part after the last "@" is `domain`
    (None: no "@")."""
    return MISSING if domain is None else _text(email_domain_type("@" + domain))


def _texts(values: Iterable[Any], text_of: Callable[[Any], str] = _text) -> np.ndarray:
    """Each value's normalised text (`text_of`), computed once per distinct value."""
    cache: dict[Any, str] = {None: MISSING}
    out = []
    for value in values:
        try:
            text = cache[value]
        except KeyError:
            text = cache[value] = text_of(value)
        except TypeError:
            text = text_of(value)
        out.append(text)
    array = np.empty(len(out), dtype=object)
    array[:] = out
    return array


def _normalise_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip().casefold()


def _json_object(value: Any) -> dict:
    if value is None:
        return {}
    if isinstance(value, str):
        loaded = json.loads(value)
        return loaded if isinstance(loaded, dict) else {}
    return value if isinstance(value, dict) else {}
