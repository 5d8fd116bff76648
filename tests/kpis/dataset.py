"""A small, known data set for the KPI tests, and an independent plain-Python computation of
what the KPIs should say about it (no SQL, no code from scoring.kpis).

Every lead is described by a `Spec` (its creation, conversion, revenue, score-history rows);
`build()` writes them with factories and returns the specs, so a test can compute the truth
from the specs alone."""

from __future__ import annotations

import datetime as dt
import math
import statistics
from dataclasses import dataclass, field

import factory
from django.contrib.auth.models import User

from scoring.models import Band, Feedback, RuleSet, ScoreHistory
from tests.factories import LeadFactory

UTC = dt.UTC


def at(day: int, hour: int = 12, minute: int = 0, month: int = 1, year: int = 2024) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, tzinfo=UTC)


class RuleSetFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = RuleSet

    name = factory.Sequence(lambda n: f"Rules {n}")
    status = RuleSet.Status.PUBLISHED
    version = factory.Sequence(lambda n: n + 1)


class ScoreHistoryFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ScoreHistory

    score = 0
    band = "Cold"
    rule_set_version = 1


BANDS = [("Cold", 0, False), ("Warm", 25, False), ("MQL", 50, True), ("Hot", 80, True)]


def live_rule_set(version: int = 1) -> RuleSet:
    rule_set = RuleSetFactory(version=version)
    for name, min_score, qualifies in BANDS:
        Band.objects.create(rule_set=rule_set, name=name, min_score=min_score, qualifies=qualifies)
    return rule_set


@dataclass
class Spec:
    key: str
    created: dt.datetime
    converted: dt.datetime | None = None
    revenue: float | None = None
    # (as_of, band, score)
    history: list[tuple[dt.datetime, str, int]] = field(default_factory=list)
    today_band: str = ""
    persona: str = ""
    source: str = "web"
    mql_at: dt.datetime | None = None
    sql_at: dt.datetime | None = None
    opportunity_at: dt.datetime | None = None
    disqualified_at: dt.datetime | None = None
    model_probability: float | None = None
    lead_id: int | None = None


SPECS: list[Spec] = [
    # The leakage trap: converted while Cold, became Hot afterwards (today's band is Hot).
    Spec(
        "trap",
        at(2),
        converted=at(10),
        revenue=1000,
        history=[(at(3), "Cold", 10), (at(12), "Hot", 85)],
        today_band="Hot",
        mql_at=at(11),
    ),
    # A row stamped exactly at the conversion does not count (strictly before).
    Spec(
        "edge",
        at(3, 8),
        converted=at(15, 12),
        revenue=500,
        history=[(at(5), "Warm", 30), (at(15, 12), "MQL", 55)],
        today_band="MQL",
    ),
    # Not converted: the band at the end of the period (the last minute of Jan 31 counts)...
    Spec("late-hot", at(4), history=[(at(4, 13), "Warm", 30), (at(31, 23, 59), "Hot", 82)]),
    # ... and a row after the end of the period does not.
    Spec(
        "drifted",
        at(5),
        history=[(at(10), "MQL", 60), (at(5, 9, month=2), "Cold", 5)],
        today_band="Cold",
        mql_at=at(10),
    ),
    # Never scored before converting: unscored, though scored afterwards.
    Spec("unscored-conv", at(6), converted=at(20), revenue=250),
    Spec("scored-after", at(7), converted=at(8), history=[(at(9), "Hot", 90)], today_band="Hot"),
    # Converted after the period: still a converter of this cohort, band before conversion.
    Spec(
        "conv-later",
        at(20),
        converted=at(10, month=2),
        revenue=2000,
        history=[(at(21), "Warm", 40), (at(5, month=2), "Hot", 88)],
        mql_at=at(5, 13, month=2),
        sql_at=at(6, month=2),
        opportunity_at=at(8, month=2),
    ),
    # Hot converters with different cycles.
    Spec(
        "hot-1",
        at(8),
        converted=at(18),
        revenue=3000,
        history=[(at(9), "Hot", 81)],
        mql_at=at(9),
        sql_at=at(12),
        opportunity_at=at(14),
    ),
    Spec(
        "hot-2",
        at(9),
        converted=at(13, 6),
        revenue=1500.5,
        history=[(at(9, 14), "MQL", 52), (at(11), "Hot", 95)],
        mql_at=at(9, 14),
        sql_at=at(11),
    ),
    Spec("hot-open", at(10), history=[(at(11), "Hot", 84)], mql_at=at(11), persona="Developer"),
    # Cold, not converted; one has pipeline revenue that must not count as won revenue.
    Spec("cold-1", at(11), history=[(at(11, 13), "Cold", 5)], revenue=999),
    Spec("cold-2", at(12), history=[(at(12, 13), "Cold", 12)], disqualified_at=at(20)),
    Spec("cold-3", at(13), history=[(at(13, 13), "Cold", 0)], persona="Developer", source="ads"),
    # Two rows at the same moment: the one written last wins.
    Spec(
        "tie",
        at(14),
        history=[(at(15), "Warm", 45), (at(15), "MQL", 50)],
        source="ads",
    ),
    # The period's first and last instants are in; just outside is out.
    Spec("first", at(1, 0, 0), history=[(at(1, 1), "Warm", 26)], source="ads"),
    Spec("last", at(31, 23, 59), history=[(at(31, 23, 59), "Cold", 3)]),
    Spec(
        "before", at(31, 23, 59, month=12, year=2023), converted=at(5), history=[(at(2), "Hot", 99)]
    ),
    Spec("after", at(1, 0, 0, month=2), history=[(at(1, 1, month=2), "Hot", 99)]),
]

# (lead key, author index, verdict, band at the verdict)
FEEDBACK = [
    ("trap", 0, "bad", "Hot"),
    ("hot-open", 0, "good", "Hot"),
    ("cold-1", 0, "bad", "Cold"),
    ("cold-1", 1, "bad", "Cold"),
    ("cold-2", 0, "good", "Cold"),
    ("tie", 1, "good", "MQL"),
    ("before", 0, "bad", "Hot"),  # created outside the period
]

PERIOD = (dt.date(2024, 1, 1), dt.date(2024, 1, 31))
CUTOFF = dt.datetime(2024, 2, 1, tzinfo=UTC)


def build() -> list[Spec]:
    """Write the specs (fresh copies) and the live rule set; returns the specs with ids."""
    live_rule_set()
    specs = [Spec(**{**s.__dict__, "history": list(s.history)}) for s in SPECS]
    for spec in specs:
        lead = LeadFactory(
            created_at=spec.created,
            converted_at=spec.converted,
            revenue=spec.revenue,
            band=spec.today_band,
            score=90 if spec.today_band == "Hot" else None,
            persona=spec.persona,
            source=spec.source,
            mql_at=spec.mql_at,
            sql_at=spec.sql_at,
            opportunity_at=spec.opportunity_at,
            disqualified_at=spec.disqualified_at,
            model_probability=spec.model_probability,
        )
        spec.lead_id = lead.id
        for as_of, band, score in spec.history:
            ScoreHistoryFactory(lead=lead, as_of=as_of, band=band, score=score)
    by_key = {spec.key: spec.lead_id for spec in specs}
    reps = [User.objects.create(username=f"kpi-rep-{i}") for i in range(2)]
    for key, author, verdict, band in FEEDBACK:
        Feedback.objects.create(
            lead_id=by_key[key], author=reps[author], verdict=verdict, band=band
        )
    return specs


# --- the independent computation ---------------------------------------------------------


def in_period(spec: Spec, start: dt.date, end: dt.date) -> bool:
    return start <= spec.created.date() <= end


def honest(spec: Spec, cutoff: dt.datetime) -> tuple[str, int | None]:
    """(band, score) before conversion, or at the cutoff; ("", None) when unscored."""
    limit = spec.converted or cutoff
    best = None
    for index, (as_of, band, score) in enumerate(spec.history):
        if as_of < limit and (best is None or (as_of, index) >= (best[0], best[1])):
            best = (as_of, index, band, score)
    return (best[2], best[3]) if best else ("", None)


def wilson(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def expected_bands(specs: list[Spec], start: dt.date, end: dt.date, **where: str) -> list[dict]:
    cutoff = dt.datetime.combine(end + dt.timedelta(days=1), dt.time.min, tzinfo=UTC)
    chosen = [
        s
        for s in specs
        if in_period(s, start, end) and all(getattr(s, k) == v for k, v in where.items())
    ]
    groups: dict[str, list[Spec]] = {}
    for spec in chosen:
        groups.setdefault(honest(spec, cutoff)[0], []).append(spec)
    order = [name for name, _, _ in BANDS] + ([""] if "" in groups else [])
    rows = []
    for band in order:
        members = groups.get(band, [])
        converters = [s for s in members if s.converted]
        n, k = len(members), len(converters)
        low, high = wilson(k, n) if n else (None, None)
        cycles = [(s.converted - s.created).total_seconds() / 86400 for s in converters]
        rows.append(
            {
                "band": band or "Unscored",
                "leads": n,
                "converted": k,
                "conversion_rate": k / n if n else None,
                "ci_low": low,
                "ci_high": high,
                "revenue": sum(s.revenue or 0 for s in converters),
                "median_cycle_days": statistics.median(cycles) if cycles else None,
            }
        )
    return rows
