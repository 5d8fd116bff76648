"""A seeded, fully vectorised generator of a believable synthetic B2B software company.

Pure NumPy, no Django: it returns column arrays that `scoring.demo.writer` stores set-based.

The model behind the data (so that scoring, KPIs and ML have something real to find):

- Leads come from companies (firmographics: employees, industry, country) and belong to a hidden
  persona (developer, marketer, executive, student, other) that fixes their job title. Lead
  creation accelerates over the last ~12 months (the company is growing).
- Each lead has a hidden purchase intent: a logit built from persona, company size, industry,
  lead source and free-mail address, plus noise. Intent drives how active the lead is, for how
  long, and *what* it does: pricing visits, demo requests and trials rise steeply with intent,
  page views and email opens barely.
- The funnel (MQL -> SQL -> opportunity -> customer, or disqualified) depends on intent and on
  the observed high-intent behaviour, with noise, and realistic delays between stages. A stage
  whose time would fall after `now` has not happened yet.

Contracts (tested in tests/demo/test_generator.py):

- the same `(n_leads, seed, events_per_lead, n_owners, now)` gives identical arrays and the
  same event stream (blocks cover fixed lead ranges and draw from their own random streams);
- emails are unique and lower-case; identity `(source, external_id)` and event
  `(source, external_id)` pairs are unique;
- `created_at < now`; stage times increase along the funnel and are never after `now`;
  `lifecycle_stage` is the latest stage reached (or `disqualified`); customers have revenue;
- every event is at or after its lead's creation and not after `now`;
- strings never contain a tab, newline or backslash (the writer's COPY text format relies on it).

Memory: the per-lead arrays (about 1 KB a lead including strings) stay in memory; events are
produced in blocks of `BLOCK_LEADS` leads (about 0.5-1M events at 10 events a lead), so
1,000,000 leads and 10,000,000 events stay well under 1.5 GB.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

STR = np.dtypes.StringDType()
US_PER_DAY = 86_400 * 1_000_000
BLOCK_LEADS = 65_536

PERSONAS = ("developer", "marketer", "executive", "student", "other")
DEVELOPER, MARKETER, EXECUTIVE, STUDENT, OTHER = range(5)
PERSONA_SHARE = np.array([0.34, 0.24, 0.12, 0.10, 0.20])
PERSONA_INTENT = np.array([0.2, 0.3, 0.6, -1.8, -0.4])

# (title, weight) per persona. The starter rule set's persona conditions rely on these words:
# students' titles contain "student", developers' "engineer", marketers' "marketing".
TITLES: tuple[tuple[tuple[str, float], ...], ...] = (
    (
        ("Software Engineer", 25),
        ("Senior Software Engineer", 18),
        ("Backend Engineer", 10),
        ("Frontend Engineer", 8),
        ("DevOps Engineer", 8),
        ("Data Engineer", 10),
        ("Platform Engineer", 6),
        ("Staff Engineer", 5),
        ("Machine Learning Engineer", 5),
        ("Engineering Manager", 5),
    ),
    (
        ("Marketing Manager", 25),
        ("Senior Marketing Manager", 10),
        ("Growth Marketing Manager", 12),
        ("Product Marketing Manager", 12),
        ("Marketing Operations Manager", 15),
        ("Content Marketing Lead", 8),
        ("Digital Marketing Specialist", 10),
        ("Head of Marketing", 8),
    ),
    (
        ("CEO", 15),
        ("CTO", 15),
        ("CFO", 5),
        ("COO", 7),
        ("CMO", 12),
        ("VP Engineering", 12),
        ("VP Marketing", 10),
        ("VP Sales", 10),
        ("Founder", 9),
        ("Managing Director", 5),
    ),
    (
        ("Student", 35),
        ("Computer Science Student", 25),
        ("Graduate Student", 20),
        ("PhD Student", 10),
        ("MBA Student", 10),
    ),
    (
        ("Sales Manager", 15),
        ("Account Executive", 12),
        ("Operations Manager", 12),
        ("Business Analyst", 12),
        ("Consultant", 12),
        ("Product Manager", 15),
        ("Customer Success Manager", 10),
        ("Intern", 5),
        ("", 7),
    ),
)
EXECUTIVE_TITLES = tuple(title for title, _ in TITLES[EXECUTIVE])


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


FIRST_NAMES = _words(
    "James Mary John Patricia Robert Jennifer Michael Linda David Elizabeth William Barbara "
    "Richard Susan Joseph Jessica Thomas Sarah Charles Karen Daniel Lisa Matthew Nancy Anthony "
    "Sandra Mark Ashley Steven Emily Paul Michelle Andrew Amanda Joshua Melissa Kevin Stephanie "
    "Brian Rebecca George Laura Timothy Sharon Jason Cynthia Ryan Kathleen Jacob Amy Gary Anna "
    "Nicholas Angela Eric Emma Jonathan Olivia Stephen Sophia Larry Mia Justin Charlotte Scott "
    "Amelia Brandon Harper Benjamin Ella Samuel Grace Gregory Chloe Alexander Zoe Patrick Lena "
    "Frank Hannah Raymond Lea Jack Clara Dennis Marie Jerry Sofia Tyler Julia Aaron Laura Jose "
    "Lucia Adam Elena Nathan Ines Henry Maja Zachary Freya Douglas Ingrid Peter Astrid Kyle "
    "Priya Wei Aarav Mei Arjun Yuki Rahul Hana Vikram Aiko Ravi Sakura Lukas Noemi Felix Elif "
    "Jonas Ayse Mateo Camila Diego Valentina Luca Giulia Hugo Manon Lars Saanvi Omar Fatima"
)
LAST_NAMES = _words(
    "Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez Lopez "
    "Gonzalez Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Perez Thompson White Harris "
    "Sanchez Clark Ramirez Lewis Robinson Walker Young Allen King Wright Scott Torres Nguyen Hill "
    "Flores Green Adams Nelson Baker Hall Rivera Campbell Mitchell Carter Roberts Gomez Phillips "
    "Evans Turner Diaz Parker Cruz Edwards Collins Reyes Stewart Morris Morales Murphy Cook "
    "Rogers Gutierrez Ortiz Morgan Cooper Peterson Bailey Reed Kelly Howard Ramos Kim Cox Ward "
    "Richardson Watson Brooks Chavez Wood James Bennett Gray Mendoza Ruiz Hughes Price Alvarez "
    "Castillo Sanders Patel Myers Long Ross Foster Jimenez Muller Schmidt Schneider Fischer Weber "
    "Meyer Wagner Becker Schulz Hoffmann Koch Richter Klein Wolf Schroder Neumann Dubois Durand "
    "Lefebvre Moreau Laurent Simon Michel Garnier Rossi Russo Ferrari Esposito Bianchi Romano "
    "Colombo Jansen Visser Smit Bakker Andersson Johansson Karlsson Nilsson Eriksson Larsson "
    "Kowalski Nowak Wisniewski Sharma Gupta Singh Kumar Shah Mehta Tanaka Suzuki Takahashi Sato "
    "Watanabe Chen Wang Li Zhang Liu Yang Huang Zhao Silva Santos Oliveira Souza Pereira Costa "
    "OBrien Murray Byrne Walsh Ryan Novak Horvat Yilmaz Demir Kaya Hansen Larsen Berg Lindqvist"
)

COMPANY_ADJECTIVES = _words(
    "Bright Blue Silver Golden Swift Clear Bold Quiet Rapid Solid True Prime Open Deep North "
    "South East West Red Green Iron Stone Cedar Maple Summit Harbor River Lake Ocean Sky Star "
    "Sun Moon Cloud Urban Nova Apex Vertex Pixel Quantum Vector Signal Atlas Orbit Polar Vivid "
    "Lumen Crest Ember"
)
COMPANY_NOUNS = _words(
    "Harbor Peak Bridge Forge Works Path Field Point Gate Wave Leaf Rock Wind Light Grid Loop "
    "Stack Byte Logic Mind Spark Flow Core Base Line Scale Shift Craft Hub Labs Ridge Valley "
    "Stream Trail Bay Port Yard Mill Tower Beacon Compass Anchor Arrow Falcon Fox Owl Lynx Bear "
    "Wolf Hawk Pine Oak Birch Fern Ivy Rose Quartz Cobalt Carbon"
)
COMPANY_SUFFIXES = _words(
    "Inc. Ltd. GmbH Labs Systems Software Analytics Technologies Solutions Group Partners "
    "Digital Health Capital Logistics Retail Media Networks Cloud Data"
)
COMPANY_REGIONS = ("", " Europe", " International", " Holdings", " Global", " Americas")

INDUSTRIES = (
    "Software",
    "Financial Services",
    "Healthcare",
    "Retail",
    "Manufacturing",
    "Education",
    "Media",
    "Telecommunications",
    "Government",
    "Logistics",
    "Consulting",
)
INDUSTRY_SHARE = np.array([0.26, 0.12, 0.10, 0.09, 0.09, 0.05, 0.06, 0.05, 0.04, 0.06, 0.08])
INDUSTRY_INTENT = np.array([0.35, 0.2, 0.0, -0.1, 0.0, -0.4, 0.0, 0.05, -0.3, 0.0, -0.05])

# (country, share, country-code top-level domain used by half its companies)
COUNTRIES: tuple[tuple[str, float, str], ...] = (
    ("United States", 34, "com"),
    ("United Kingdom", 10, "co.uk"),
    ("Germany", 9, "de"),
    ("France", 6, "fr"),
    ("India", 8, "in"),
    ("Canada", 5, "ca"),
    ("Netherlands", 4, "nl"),
    ("Australia", 4, "com.au"),
    ("Brazil", 3, "com.br"),
    ("Spain", 3, "es"),
    ("Japan", 3, "jp"),
    ("Sweden", 2, "se"),
    ("Singapore", 2, "sg"),
    ("Poland", 2, "pl"),
    ("Ireland", 2, "ie"),
    ("Italy", 3, "it"),
)
GENERIC_TLDS = ("com", "com", "com", "io", "io", "ai", "co")
UNIVERSITY_CITIES = _words(
    "Boston Stanford Cambridge Oxford Munich Berlin Paris Delft Toronto Sydney Melbourne Madrid "
    "Stockholm Warsaw Dublin Milan Tokyo Singapore Mumbai Austin Chicago Seattle Denver Leeds"
)

FREE_MAIL = (
    ("gmail.com", 50),
    ("outlook.com", 15),
    ("yahoo.com", 12),
    ("hotmail.com", 10),
    ("icloud.com", 8),
    ("proton.me", 5),
)

SOURCES = ("web", "organic", "paid", "referral", "event", "partner")
SOURCE_SHARE = np.array([0.28, 0.22, 0.18, 0.10, 0.10, 0.12])
SOURCE_INTENT = np.array([0.1, 0.0, -0.25, 0.6, 0.25, 0.35])
PAID_CAMPAIGNS = ("search-brand", "search-generic", "linkedin-abm", "retargeting")

# Event types: (name, share of events at average intent, intent elasticity, per-persona
# multipliers [developer, marketer, executive, student, other], source, max per lead or 0).
EVENT_TYPES: tuple[tuple[str, float, float, tuple[float, ...], str, int], ...] = (
    ("page_view", 0.36, 0.3, (1.0, 1.0, 0.6, 1.2, 0.9), "mixpanel", 0),
    ("pricing_page_visit", 0.035, 1.4, (0.8, 1.0, 1.6, 0.3, 1.0), "mixpanel", 0),
    ("demo_request", 0.006, 1.8, (0.6, 1.2, 1.8, 0.1, 1.0), "hubspot", 2),
    ("trial_signup", 0.008, 1.2, (1.5, 1.0, 0.6, 1.2, 0.8), "mixpanel", 1),
    ("api_call", 0.14, 0.8, (3.0, 0.2, 0.3, 1.5, 0.4), "mixpanel", 0),
    ("feature_used", 0.10, 0.9, (1.2, 1.3, 0.7, 0.8, 1.0), "mixpanel", 0),
    ("email_open", 0.20, 0.2, (0.7, 1.5, 0.9, 0.8, 1.1), "hubspot", 0),
    ("email_click", 0.05, 0.7, (0.6, 1.6, 0.9, 0.6, 1.0), "hubspot", 0),
    ("webinar_attended", 0.012, 0.7, (0.8, 1.4, 1.0, 1.2, 1.0), "hubspot", 4),
    ("content_download", 0.03, 0.5, (0.7, 1.5, 1.0, 1.4, 1.0), "hubspot", 0),
    ("survey_answer", 0.008, 0.0, (1.0, 1.0, 1.0, 1.0, 1.0), "hubspot", 2),
)
EVENT_TYPE_NAMES = (*(spec[0] for spec in EVENT_TYPES), "unsubscribe")
UNSUBSCRIBE = len(EVENT_TYPES)
EVENT_SOURCES = (*(spec[4] for spec in EVENT_TYPES), "hubspot")
_TYPE_INDEX = {name: i for i, name in enumerate(EVENT_TYPE_NAMES)}

# Each event's properties are one of its type's prebuilt JSON documents (no escapes needed).
EVENT_PROPERTIES: dict[str, tuple[str, ...]] = {
    "page_view": tuple(
        f'{{"path": "{path}"}}'
        for path in (
            "/",
            "/product",
            "/product/scoring",
            "/integrations",
            "/customers",
            "/blog/lead-scoring-101",
            "/blog/revops-metrics",
            "/docs/getting-started",
            "/docs/api",
            "/careers",
        )
    ),
    "pricing_page_visit": tuple(
        f'{{"path": "/pricing", "plan": "{plan}"}}' for plan in ("team", "business", "enterprise")
    ),
    "demo_request": ('{"form": "book-demo"}', '{"form": "contact-sales"}'),
    "trial_signup": ('{"plan": "team"}', '{"plan": "business"}'),
    "api_call": tuple(
        f'{{"endpoint": "{endpoint}"}}' for endpoint in ("/v1/leads", "/v1/events", "/v1/scores")
    ),
    "feature_used": tuple(
        f'{{"feature": "{feature}"}}'
        for feature in ("dashboards", "rule_editor", "exports", "integrations", "alerts")
    ),
    "email_open": tuple(
        f'{{"campaign": "{campaign}"}}'
        for campaign in ("newsletter", "product-launch", "nurture-1", "nurture-2", "webinar-invite")
    ),
    "email_click": tuple(
        f'{{"campaign": "{campaign}"}}'
        for campaign in ("newsletter", "product-launch", "nurture-1", "nurture-2", "webinar-invite")
    ),
    "webinar_attended": tuple(
        f'{{"webinar": "{webinar}"}}'
        for webinar in ("scoring-101", "revops-panel", "api-deep-dive", "customer-stories")
    ),
    "content_download": tuple(
        f'{{"asset": "{asset}"}}'
        for asset in ("buyers-guide", "roi-calculator", "state-of-revops-report")
    ),
    "survey_answer": tuple(f'{{"question": "nps", "score": {score}}}' for score in range(11)),
    "unsubscribe": ('{"list": "newsletter"}', '{"list": "all"}'),
}

FUNNEL = ("lead", "mql", "sql", "opportunity", "customer")


@dataclass(frozen=True)
class LeadColumns:
    """One entry per lead, in lead-index order. Missing strings are "", missing numbers are
    flagged (`employees_missing`) or NaN (`revenue`), missing times are NaT. Times are
    `datetime64[us]` in UTC. `persona` and `intent` are hidden truths, not lead fields."""

    email: np.ndarray
    first_name: np.ndarray
    last_name: np.ndarray
    title: np.ndarray
    company: np.ndarray
    employees: np.ndarray  # int64
    employees_missing: np.ndarray  # bool
    industry: np.ndarray
    country: np.ndarray
    source: np.ndarray
    attributes_json: np.ndarray
    plan_interest: np.ndarray
    trial_signup: np.ndarray  # bool
    owner_index: np.ndarray  # int64 index into the owners list, -1 for none
    lifecycle_stage: np.ndarray
    created_at: np.ndarray
    updated_at: np.ndarray
    mql_at: np.ndarray
    sql_at: np.ndarray
    opportunity_at: np.ndarray
    converted_at: np.ndarray
    disqualified_at: np.ndarray
    revenue: np.ndarray  # float64, NaN unless customer
    persona: np.ndarray  # int8 hidden persona code (index into PERSONAS)
    intent: np.ndarray  # float64 hidden purchase intent in (0, 1)
    event_counts: np.ndarray  # int32 (n, len(EVENT_TYPE_NAMES))
    active_days: np.ndarray  # float64: events fall in [created_at, created_at + active_days]

    def __len__(self) -> int:
        return len(self.email)

    @property
    def n_events(self) -> int:
        return int(self.event_counts.sum())


@dataclass(frozen=True)
class IdentityColumns:
    lead_index: np.ndarray  # int64
    source: np.ndarray
    external_id: np.ndarray

    def __len__(self) -> int:
        return len(self.lead_index)


@dataclass(frozen=True)
class EventColumns:
    """One block of events, sorted by (lead, time)."""

    lead_index: np.ndarray  # int64
    event_type: np.ndarray
    source: np.ndarray
    external_id: np.ndarray
    occurred_at: np.ndarray  # datetime64[us]
    received_at: np.ndarray  # datetime64[us]
    properties_json: np.ndarray

    def __len__(self) -> int:
        return len(self.lead_index)


@dataclass(frozen=True)
class DemoData:
    """Leads and identities in memory; events generated block by block on demand."""

    leads: LeadColumns
    identities: IdentityColumns
    seed: int
    now: np.datetime64

    def iter_events(self) -> Iterator[EventColumns]:
        return iter_event_blocks(self.leads, seed=self.seed, now=self.now)


# --------------------------------------------------------------------------------------------
# helpers


def _rng(seed: int, *stream: int) -> np.random.Generator:
    # One independent stream per purpose (and per event block), so that adding a column or
    # changing the block size never shifts the random numbers another column sees.
    return np.random.default_rng(np.random.SeedSequence([seed, *stream]))


def _strings(values: Sequence[str]) -> np.ndarray:
    return np.array(values, dtype=STR)


def _choice(rng: np.random.Generator, n: int, weights: np.ndarray | Sequence[float]) -> np.ndarray:
    p = np.asarray(weights, dtype=float)
    return rng.choice(len(p), size=n, p=p / p.sum())


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _cat(*parts: np.ndarray | str) -> np.ndarray:
    out = parts[0]
    for part in parts[1:]:
        out = np.strings.add(out, part)
    return out


def _days(values: np.ndarray) -> np.ndarray:
    return (values * US_PER_DAY).astype("timedelta64[us]")


def _to_datetime64(now: dt.datetime | np.datetime64 | None) -> np.datetime64:
    if now is None:
        now = dt.datetime.now(dt.UTC)
    if isinstance(now, dt.datetime):
        if now.tzinfo is not None:
            now = now.astimezone(dt.UTC).replace(tzinfo=None)
        now = np.datetime64(now, "us")
    return np.datetime64(now, "us")


def _unique_suffixes(keys: np.ndarray) -> np.ndarray:
    """ "" for the first occurrence of each key, then "2", "3", ... (so joined keys stay unique)."""
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    new_group = np.ones(len(keys), dtype=bool)
    new_group[1:] = sorted_keys[1:] != sorted_keys[:-1]
    group_start = np.maximum.accumulate(np.where(new_group, np.arange(len(keys)), 0))
    rank = np.empty(len(keys), dtype=np.int64)
    rank[order] = np.arange(len(keys)) - group_start
    return np.where(rank > 0, (rank + 1).astype(STR), "")


def _base36(values: np.ndarray, width: int) -> np.ndarray:
    digits = _strings(list("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
    remaining = values.astype(np.int64)
    out = np.full(len(values), "", dtype=STR)
    for _ in range(width):  # loops over digit positions, not over rows
        out = np.strings.add(digits[remaining % 36], out)
        remaining = remaining // 36
    return out


def _hex(values: np.ndarray) -> np.ndarray:
    digits = _strings(list("0123456789abcdef"))
    remaining = values.astype(np.uint64)
    out = np.full(len(values), "", dtype=STR)
    for _ in range(16):
        out = np.strings.add(digits[(remaining & np.uint64(15)).astype(np.int64)], out)
        remaining = remaining >> np.uint64(4)
    return out


# --------------------------------------------------------------------------------------------
# leads


def _companies(rng: np.random.Generator, n_companies: int) -> dict[str, np.ndarray]:
    combos = len(COMPANY_ADJECTIVES) * len(COMPANY_NOUNS) * len(COMPANY_SUFFIXES)
    total = combos * len(COMPANY_REGIONS)
    # A random but repeatable pick of distinct name combinations, so neighbours do not look
    # alike; beyond the combinations (far past the benchmark) a number keeps names distinct.
    code = rng.permutation(total)[:n_companies] if n_companies <= total else np.arange(n_companies)
    adjective = code % len(COMPANY_ADJECTIVES)
    noun = (code // len(COMPANY_ADJECTIVES)) % len(COMPANY_NOUNS)
    suffix = (code // (len(COMPANY_ADJECTIVES) * len(COMPANY_NOUNS))) % len(COMPANY_SUFFIXES)
    region = (code // combos) % len(COMPANY_REGIONS)
    adjectives = _strings(COMPANY_ADJECTIVES)
    nouns = _strings(COMPANY_NOUNS)
    name = _cat(
        adjectives[adjective],
        nouns[noun],
        " ",
        _strings(COMPANY_SUFFIXES)[suffix],
        _strings(COMPANY_REGIONS)[region],
    )
    if n_companies > total:
        name = _cat(name, np.where(code >= total, _cat(" ", (code // total).astype(STR)), ""))

    country = _choice(rng, n_companies, [share for _, share, _ in COUNTRIES])
    national = rng.random(n_companies) < 0.5
    tld = np.where(
        national,
        _strings([tld for _, _, tld in COUNTRIES])[country],
        _strings(GENERIC_TLDS)[rng.integers(0, len(GENERIC_TLDS), n_companies)],
    )
    domain = _cat(np.strings.lower(_cat(adjectives[adjective], nouns[noun])), ".", tld)
    # Company size: heavy-tailed, median around 120 people.
    employees = np.clip(np.round(np.exp(rng.normal(np.log(120), 1.6, n_companies))), 1, 250_000)
    return {
        "name": name,
        "domain": domain,
        "country": country,
        "employees": employees.astype(np.int64),
        "industry": _choice(rng, n_companies, INDUSTRY_SHARE),
    }


def _titles(rng: np.random.Generator, persona: np.ndarray) -> np.ndarray:
    title = np.full(len(persona), "", dtype=STR)
    for code, options in enumerate(TITLES):  # one pass per persona, vectorised within it
        members = np.flatnonzero(persona == code)
        pick = _choice(rng, len(members), [weight for _, weight in options])
        title[members] = _strings([name for name, _ in options])[pick]
    return title


def _created_at(rng: np.random.Generator, n: int, now: np.datetime64) -> np.ndarray:
    # Inverse CDF of a density growing like exp(1.5 t) over the last 365 days: more leads lately.
    growth = 1.5
    t = np.log1p(rng.random(n) * np.expm1(growth)) / growth
    days_ago = 365.0 * (1.0 - t) + 300.0 / 86_400  # at least five minutes old
    return now - _days(days_ago)


def _funnel(
    rng: np.random.Generator,
    *,
    z: np.ndarray,
    engagement: np.ndarray,
    persona: np.ndarray,
    created_at: np.ndarray,
    now: np.datetime64,
) -> dict[str, np.ndarray]:
    n = len(z)
    propensity = 0.9 * z + 0.6 * engagement + rng.normal(0.0, 0.7, n)
    propensity = propensity - np.where(persona == STUDENT, 1.0, 0.0)
    # (stage, offset of the pass probability, median delay from the previous stage in days)
    stages = (("mql", -1.5, 8.0), ("sql", -1.2, 6.0), ("opportunity", -0.6, 12.0),
              ("customer", -2.2, 35.0))  # fmt: skip
    times: dict[str, np.ndarray] = {}
    previous = created_at
    alive = np.ones(n, dtype=bool)  # passed every draw so far, and each time is not in the future
    failed_at = np.full(n, np.datetime64("NaT"), dtype="datetime64[us]")
    failed = np.zeros(n, dtype=bool)
    for stage, offset, median_delay in stages:  # four passes over the funnel, not per lead
        passes = rng.random(n) < _sigmoid(propensity + offset + rng.normal(0.0, 0.5, n))
        # Keener leads move faster; every stage takes at least an hour.
        delay = median_delay * np.exp(rng.normal(0.0, 0.8, n) - 0.15 * z) + 1.0 / 24
        at = previous + _days(delay)
        reached = alive & passes & (at <= now)
        # Leads that failed this stage's draw (not those whose time has simply not come yet)
        # may be disqualified later.
        newly_failed = alive & ~passes
        failed |= newly_failed
        failed_at = np.where(newly_failed, previous, failed_at)
        times[stage] = np.where(reached, at, np.datetime64("NaT"))
        alive = reached
        previous = np.where(reached, at, previous)

    disqualify_p = np.where(failed_at == created_at, 0.06, 0.4)
    disqualify_p = np.where(persona == STUDENT, disqualify_p * 2.5, disqualify_p)
    disqualify_at = failed_at + _days(20.0 * np.exp(rng.normal(0.0, 0.7, n)))
    disqualified = failed & (rng.random(n) < disqualify_p) & (disqualify_at <= now)
    times["disqualified"] = np.where(disqualified, disqualify_at, np.datetime64("NaT"))

    stage = np.full(n, "lead", dtype=STR)
    for name in ("mql", "sql", "opportunity", "customer"):
        stage = np.where(~np.isnat(times[name]), name, stage)
    stage = np.where(disqualified, "disqualified", stage)
    times["stage"] = stage
    return times


def _emails(
    rng: np.random.Generator,
    *,
    first_name: np.ndarray,
    last_name: np.ndarray,
    student: np.ndarray,
    university: np.ndarray,
    company_domain: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Unique lower-case emails, and whether each is a free-mail address."""
    n = len(first_name)
    # A business domain unless free mail (most students, some of everyone else).
    free = rng.random(n) < np.where(student, 0.8, 0.12)
    free_domains = _strings([d for d, _ in FREE_MAIL])
    free_domain = free_domains[_choice(rng, n, [w for _, w in FREE_MAIL])]
    student_domain = _cat(np.strings.lower(university), "-university.edu")
    domain = np.where(free, free_domain, np.where(student, student_domain, company_domain))
    first_lower = np.strings.lower(first_name)
    last_lower = np.strings.lower(last_name)
    style = rng.random(n)
    local = np.where(
        style < 0.6,
        _cat(first_lower, ".", last_lower),
        np.where(style < 0.85, _cat(np.strings.slice(first_lower, 0, 1), last_lower), first_lower),
    )
    local = np.where(free & (style >= 0.85), _cat(first_lower, last_lower), local)
    key = _cat(local, "@", domain)
    email = _cat(local, _unique_suffixes(key), "@", domain)
    return email, free


def _event_counts(
    rng: np.random.Generator,
    *,
    z: np.ndarray,
    persona: np.ndarray,
    active_days: np.ndarray,
    events_per_lead: float,
) -> np.ndarray:
    """(n, len(EVENT_TYPE_NAMES)) int32 counts; the last column is unsubscribes (0 or 1)."""
    n = len(z)
    # Per-type event counts: Poisson around activity x duration x type mix (scaled so that the
    # mean over all leads is events_per_lead), with per-lead over-dispersion.
    shares = np.array([spec[1] for spec in EVENT_TYPES])
    elasticity = np.array([spec[2] for spec in EVENT_TYPES])
    persona_mult = np.array([spec[3] for spec in EVENT_TYPES]).T  # (persona, type)
    activity = rng.gamma(1.2, 1 / 1.2, n) * active_days
    rate = (
        activity[:, None] * shares[None, :] * np.exp(elasticity[None, :] * z[:, None])
    ) * persona_mult[persona]
    # About 5% unsubscribe at 10 events a lead; fewer in a quieter world, none in a silent one.
    unsubscribe_p = 0.12 * _sigmoid(-z - 0.5) * min(1.0, events_per_lead / 10.0)
    caps = np.array([spec[5] for spec in EVENT_TYPES])
    capped = caps > 0
    scale = events_per_lead * n / rate.sum() if n and rate.sum() > 0 else 0.0
    counts = np.zeros(rate.shape, dtype=np.int32)
    counts[:, capped] = np.minimum(rng.poisson(rate[:, capped] * scale), caps[capped])
    # Capped types fall short of their expectation, so the uncapped ones are scaled to make up
    # the difference and the mean is events_per_lead (up to Poisson noise).
    remaining = events_per_lead * n - counts.sum() - unsubscribe_p.sum()
    uncapped_rate = rate[:, ~capped].sum()
    scale = max(remaining, 0.0) / uncapped_rate if uncapped_rate > 0 else 0.0
    counts[:, ~capped] = rng.poisson(rate[:, ~capped] * scale)
    unsubscribed = (rng.random(n) < unsubscribe_p).astype(np.int32)
    return np.concatenate([counts, unsubscribed[:, None]], axis=1)


def generate_leads(
    n_leads: int,
    *,
    seed: int = 0,
    events_per_lead: float = 10.0,
    n_owners: int = 2,
    now: dt.datetime | np.datetime64 | None = None,
) -> LeadColumns:
    """The demo company's leads (with their per-type event counts, drawn up front so that
    attributes such as `trial_signup` and the funnel agree with the behaviour)."""
    if n_leads < 0:
        raise ValueError("n_leads must not be negative")
    if events_per_lead < 0:
        raise ValueError("events_per_lead must not be negative")
    now64 = _to_datetime64(now)
    n = n_leads

    rng = _rng(seed, 1)
    company_rng = _rng(seed, 2)
    n_companies = max(20, n // 6)
    companies = _companies(company_rng, n_companies)

    persona = _choice(rng, n, PERSONA_SHARE).astype(np.int8)
    student = persona == STUDENT
    # A few companies have many leads, most have one or two.
    company = np.minimum((n_companies * rng.random(n) ** 1.6).astype(np.int64), n_companies - 1)

    first_names = _strings(FIRST_NAMES)
    last_names = _strings(LAST_NAMES)
    first_name = first_names[rng.integers(0, len(first_names), n)]
    last_name = last_names[rng.integers(0, len(last_names), n)]
    title = _titles(rng, persona)

    university = _strings(UNIVERSITY_CITIES)[rng.integers(0, len(UNIVERSITY_CITIES), n)]
    company_name = np.where(student, _cat("University of ", university), companies["name"][company])
    employees = companies["employees"][company]
    employees_missing = student | (rng.random(n) < 0.07)
    employees = np.where(employees_missing, 0, employees)
    industry_code = np.where(student, INDUSTRIES.index("Education"), companies["industry"][company])
    industry_missing = ~student & (rng.random(n) < 0.04)
    industry = np.where(industry_missing, "", _strings(INDUSTRIES)[industry_code])
    country_code = companies["country"][company]
    country_missing = rng.random(n) < 0.03
    country = np.where(country_missing, "", _strings([c for c, _, _ in COUNTRIES])[country_code])
    source_code = _choice(rng, n, SOURCE_SHARE)
    source = _strings(SOURCES)[source_code]

    email, free = _emails(
        rng,
        first_name=first_name,
        last_name=last_name,
        student=student,
        university=university,
        company_domain=companies["domain"][company],
    )
    del university, companies  # large temporaries: the 1M-lead run must stay under 1.5 GB

    # Hidden purchase intent: firmographics + persona + source + noise.
    size_effect = np.where(
        employees_missing, 0.0, np.clip(0.3 * np.log10(np.maximum(employees, 1) / 50.0), -0.5, 0.6)
    )
    z = (
        PERSONA_INTENT[persona]
        + size_effect
        + np.where(industry_missing, 0.0, INDUSTRY_INTENT[industry_code])
        + SOURCE_INTENT[source_code]
        - 0.5 * free
        + rng.normal(0.0, 0.9, n)
    )
    z = z - (z.mean() if n else 0.0)
    intent = _sigmoid(z - 1.0)

    created_at = _created_at(rng, n, now64)
    age_days = (now64 - created_at) / np.timedelta64(1, "D")
    # Keen leads stay active for months; the rest go quiet after a few weeks.
    active_days = np.minimum(age_days, rng.exponential(15.0 + 240.0 * intent))

    counts = _event_counts(
        rng, z=z, persona=persona, active_days=active_days, events_per_lead=events_per_lead
    )
    unsubscribed = counts[:, UNSUBSCRIBE]
    t = _TYPE_INDEX
    engagement = (
        np.log1p(
            counts[:, t["pricing_page_visit"]]
            + 3 * counts[:, t["demo_request"]]
            + 2 * counts[:, t["trial_signup"]]
            + 0.5 * counts[:, t["webinar_attended"]]
        )
        - 0.8 * unsubscribed
    )

    funnel_rng = _rng(seed, 3)
    times = _funnel(
        funnel_rng, z=z, engagement=engagement, persona=persona, created_at=created_at, now=now64
    )
    customer = ~np.isnat(times["customer"])
    acv = 9_000 * (np.where(employees_missing, 100, np.maximum(employees, 1)) / 100.0) ** 0.4
    revenue = np.round(acv * np.exp(funnel_rng.normal(0.0, 0.5, n)), -2)
    revenue = np.where(customer, np.maximum(revenue, 1_000.0), np.nan)
    latest = created_at
    for name in ("mql", "sql", "opportunity", "customer", "disqualified"):
        latest = np.where(np.isnat(times[name]), latest, np.maximum(latest, times[name]))

    # Custom attributes: plan interest (by company size, set for ~70%), trial signup (from the
    # behaviour), the paid campaign for paid leads.
    size_band = np.digitize(np.where(employees_missing, 10, employees), [20, 500])
    plan_options = _strings(["starter", "team", "team", "business", "business", "enterprise"])
    plan = plan_options[2 * size_band + (rng.random(n) < 0.5)]
    plan_interest = np.where(rng.random(n) < 0.7, plan, "")
    trial_signup = counts[:, t["trial_signup"]] > 0
    campaign = _strings(PAID_CAMPAIGNS)[rng.integers(0, len(PAID_CAMPAIGNS), n)]
    attributes_json = _cat(
        "{",
        np.where(plan_interest != "", _cat('"plan_interest": "', plan_interest, '", '), ""),
        np.where(
            source_code == SOURCES.index("paid"), _cat('"utm_campaign": "', campaign, '", '), ""
        ),
        '"trial_signup": ',
        np.where(trial_signup, "true", "false"),
        "}",
    )

    owner_index = _owners(rng, n, n_owners)

    return LeadColumns(
        email=email,
        first_name=first_name,
        last_name=last_name,
        title=title,
        company=company_name,
        employees=employees.astype(np.int64),
        employees_missing=employees_missing,
        industry=industry,
        country=country,
        source=source,
        attributes_json=attributes_json,
        plan_interest=plan_interest,
        trial_signup=trial_signup,
        owner_index=owner_index,
        lifecycle_stage=times["stage"],
        created_at=created_at,
        updated_at=latest,
        mql_at=times["mql"],
        sql_at=times["sql"],
        opportunity_at=times["opportunity"],
        converted_at=times["customer"],
        disqualified_at=times["disqualified"],
        revenue=revenue,
        persona=persona,
        intent=intent,
        event_counts=counts,
        active_days=active_days,
    )


def _owners(rng: np.random.Generator, n: int, n_owners: int) -> np.ndarray:
    """Owner index per lead: the first two reps own most leads (they are the demo's sales1
    and sales2), the others share the rest."""
    if n_owners <= 0:
        return np.full(n, -1, dtype=np.int64)
    if n_owners <= 2:
        weights = np.ones(n_owners)
    else:
        weights = np.concatenate([[0.3, 0.3], np.full(n_owners - 2, 0.4 / (n_owners - 2))])
    return _choice(rng, n, weights).astype(np.int64)


# --------------------------------------------------------------------------------------------
# identities


def generate_identities(leads: LeadColumns, *, seed: int = 0) -> IdentityColumns:
    """CRM and analytics ids: HubSpot for most leads, Salesforce for every lead that reached
    MQL (sales works there) and some others, Mixpanel distinct ids (one or two) for leads with
    product events."""
    rng = _rng(seed, 4)
    n = len(leads)
    index = np.arange(n, dtype=np.int64)
    counts = leads.event_counts
    mixpanel_types = [i for i, src in enumerate(EVENT_SOURCES) if src == "mixpanel"]

    hubspot = index[rng.random(n) < np.where(leads.source == "paid", 0.85, 0.65)]
    salesforce = index[(~np.isnat(leads.mql_at)) | (rng.random(n) < 0.3)]
    has_product = counts[:, mixpanel_types].sum(axis=1) > 0
    mixpanel_one = index[has_product & (rng.random(n) < 0.75)]
    second = rng.random(len(mixpanel_one)) < 0.2
    mixpanel_two = mixpanel_one[second]

    # Ids derived bijectively from the lead index (odd multiplier mod 2**64), so they are
    # unique without a uniqueness check and look random.
    mult = np.uint64(0x9E3779B97F4A7C15)
    mp_one = _hex(mixpanel_one.astype(np.uint64) * np.uint64(2) * mult)
    mp_two = _hex((mixpanel_two.astype(np.uint64) * np.uint64(2) + np.uint64(1)) * mult)

    lead_index = np.concatenate([hubspot, salesforce, mixpanel_one, mixpanel_two])
    source = np.concatenate(
        [
            np.full(len(hubspot), "hubspot", dtype=STR),
            np.full(len(salesforce), "salesforce", dtype=STR),
            np.full(len(mixpanel_one) + len(mixpanel_two), "mixpanel", dtype=STR),
        ]
    )
    external_id = np.concatenate(
        [
            (hubspot + 10_000_001).astype(STR),
            _cat("00Q", _base36(salesforce + 36**9, 12)),
            mp_one,
            mp_two,
        ]
    )
    return IdentityColumns(lead_index=lead_index, source=source, external_id=external_id)


# --------------------------------------------------------------------------------------------
# events


def iter_event_blocks(
    leads: LeadColumns, *, seed: int = 0, now: dt.datetime | np.datetime64 | None = None
) -> Iterator[EventColumns]:
    """The leads' events, `BLOCK_LEADS` leads at a time, each block sorted by (lead, time).

    Blocks cover fixed lead ranges and draw from their own random streams, so the stream is
    the same however it is consumed; event external ids come from a running offset."""
    now64 = _to_datetime64(now)
    counts = leads.event_counts
    n = len(leads)
    type_names = _strings(EVENT_TYPE_NAMES)
    type_sources = _strings(EVENT_SOURCES)
    property_table: list[str] = []
    property_offset = np.zeros(len(EVENT_TYPE_NAMES), dtype=np.int64)
    property_count = np.zeros(len(EVENT_TYPE_NAMES), dtype=np.int64)
    for i, name in enumerate(EVENT_TYPE_NAMES):
        property_offset[i] = len(property_table)
        property_count[i] = len(EVENT_PROPERTIES[name])
        property_table.extend(EVENT_PROPERTIES[name])
    properties = _strings(property_table)

    n_types = counts.shape[1]
    offset = 0
    for block, start in enumerate(range(0, n, BLOCK_LEADS)):
        stop = min(start + BLOCK_LEADS, n)
        block_counts = counts[start:stop].ravel()
        m = int(block_counts.sum())
        if m == 0:
            continue
        rng = _rng(seed, 100, block)
        cell = np.repeat(np.arange(len(block_counts), dtype=np.int64), block_counts)
        lead_index = start + cell // n_types
        event_type = cell % n_types
        created = leads.created_at[lead_index]
        active = leads.active_days[lead_index]
        occurred = created + _days(rng.random(m) * active)
        occurred = np.minimum(occurred, now64)
        order = np.lexsort((occurred, lead_index))
        lead_index, event_type, occurred = lead_index[order], event_type[order], occurred[order]
        lag_us = (rng.exponential(20.0, m) * 1_000_000).astype("timedelta64[us]")
        received = np.minimum(occurred + lag_us, now64)
        choice = (rng.random(m) * property_count[event_type]).astype(np.int64)
        ids = np.arange(offset, offset + m, dtype=np.int64)
        offset += m
        yield EventColumns(
            lead_index=lead_index,
            event_type=type_names[event_type],
            source=type_sources[event_type],
            external_id=_cat("ev-", np.strings.zfill(ids.astype(STR), 9)),
            occurred_at=occurred,
            received_at=received,
            properties_json=properties[property_offset[event_type] + choice],
        )


def generate(
    n_leads: int,
    *,
    seed: int = 0,
    events_per_lead: float = 10.0,
    n_owners: int = 2,
    now: dt.datetime | np.datetime64 | None = None,
) -> DemoData:
    """Leads and identities now, events lazily (`DemoData.iter_events()`)."""
    now64 = _to_datetime64(now)
    leads = generate_leads(
        n_leads, seed=seed, events_per_lead=events_per_lead, n_owners=n_owners, now=now64
    )
    return DemoData(
        leads=leads, identities=generate_identities(leads, seed=seed), seed=seed, now=now64
    )
