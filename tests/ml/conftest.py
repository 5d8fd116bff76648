"""Synthetic lead data with a known signal, in the two shapes the trainer meets: dated (leads
created over months, conversions with times, behaviour events) and dateless (a
`Leads.csv`-shaped import: every lead created at once, customers without `converted_at`,
custom attributes including sales-entered columns that leak the label)."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pytest
from django.utils import timezone

from scoring.models import Event, Lead

ORIGINS = ("landing page submission", "api", "lead add form", "lead import")


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def make_dateless(n: int = 1200, seed: int = 1) -> np.ndarray:
    """Leads.csv-shaped: attributes TotalVisits, Total Time Spent, Lead Origin, City, a unique
    Lead Number, and `Tags` / `Lead Quality` equal to the outcome (leakage). Returns y."""
    rng = np.random.default_rng(seed)
    now = timezone.now() - dt.timedelta(hours=1)
    visits = rng.poisson(3, n)
    time_spent = rng.gamma(2.0, 300.0, n)
    origin = rng.choice(len(ORIGINS), n, p=[0.5, 0.3, 0.1, 0.1])
    logit = -1.2 + 0.35 * (visits - 3) + 0.0025 * (time_spent - 600) + 1.6 * (origin == 2)
    y = (rng.random(n) < _sigmoid(logit)).astype(int)
    leads = []
    for i in range(n):
        attributes = {
            "Lead Number": 600000 + i,
            "Lead Origin": ORIGINS[origin[i]],
            "TotalVisits": int(visits[i]) if i % 40 else None,
            "Total Time Spent on Website": round(float(time_spent[i]), 1),
            "City": rng.choice(["Mumbai", "Select", "Thane", "Other"]).item(),
            "Tags": "Closed by Horizzon" if y[i] else "Ringing",
            "Lead Quality": "High in Relevance" if y[i] else "Worst",
        }
        leads.append(
            Lead(
                email=f"x{i}@{'gmail.com' if i % 3 else 'acme.com'}",
                source=["Google", "google", "Direct Traffic", "Olark Chat"][i % 4],
                attributes=attributes,
                lifecycle_stage="customer" if y[i] else "lead",
                created_at=now,
            )
        )
    Lead.objects.bulk_create(leads, batch_size=1000)
    return y


def make_dated(n: int = 1500, seed: int = 2) -> dict:
    """Leads created over 300 days before the cut-off (now - 90 days); conversions within the
    90 days after it for positives; `pricing` events before the cut-off carry the signal, and
    a burst of `demo_request` events AFTER the cut-off is given to the converters (a model
    that saw it would be cheating)."""
    rng = np.random.default_rng(seed)
    now = timezone.now()
    cutoff = now - dt.timedelta(days=90)
    created = [cutoff - dt.timedelta(days=float(d)) for d in rng.uniform(1, 300, n)]
    employees = rng.integers(5, 2000, n)
    pricing = rng.poisson(1.2, n)
    logit = -1.5 + 1.4 * (pricing - 1.2) + 0.0015 * (employees - 1000)
    y = (rng.random(n) < _sigmoid(logit)).astype(int)
    leads = []
    for i in range(n):
        converted = cutoff + dt.timedelta(days=float(rng.uniform(1, 80))) if y[i] else None
        leads.append(
            Lead(
                email=f"d{i}@corp{i % 50}.com",
                employees=int(employees[i]),
                industry=["software", "retail", "finance"][i % 3],
                source="web",
                created_at=created[i],
                lifecycle_stage="customer" if y[i] else "lead",
                converted_at=converted,
            )
        )
    Lead.objects.bulk_create(leads, batch_size=1000)
    ids = list(Lead.objects.order_by("id").values_list("id", flat=True))
    events = []
    k = 0
    for i, lead_id in enumerate(ids):
        for _ in range(int(pricing[i])):
            k += 1
            events.append(
                Event(
                    source="t",
                    external_id=f"p{k}",
                    lead_id=lead_id,
                    event_type="pricing_page_visit",
                    occurred_at=cutoff - dt.timedelta(days=float(rng.uniform(0.5, 25))),
                    properties={},
                )
            )
        if y[i]:
            k += 1
            events.append(
                Event(
                    source="t",
                    external_id=f"d{k}",
                    lead_id=lead_id,
                    event_type="demo_request",
                    occurred_at=cutoff + dt.timedelta(days=0.5),
                    properties={},
                )
            )
    Event.objects.bulk_create(events, batch_size=2000)
    return {"y": y, "cutoff": cutoff, "ids": np.asarray(ids)}


@pytest.fixture
def dateless_leads(db):
    return make_dateless()


@pytest.fixture
def dated_leads(db):
    return make_dated()


def mapping_document() -> str:
    return json.dumps({"label": "Converted", "leakage": ["Tags", "Lead Quality"]})


LIVE_RULES = {
    "name": "Live rules",
    "bands": [
        {"name": "Cold", "min_score": 0},
        {"name": "Warm", "min_score": 25},
        {"name": "MQL", "min_score": 50, "qualifies": True},
    ],
    "rules": [
        {"kind": "event", "event_type": "pricing_page_visit", "points": 10, "window_days": 30},
        {"kind": "attribute", "field": "employees", "op": "gte", "value": 1000, "points": 10},
        {"kind": "attribute", "field": "industry", "op": "eq", "value": "retail", "points": 5},
    ],
}


@pytest.fixture
def live_rules(db):
    from scoring.services.rulesets import ruleset_import

    return ruleset_import(LIVE_RULES, publish=True)


@pytest.fixture
def no_mappings(tmp_path, monkeypatch):
    """No mapping files at all (so only what a test passes is excluded)."""
    from scoring.ml import feature_frame

    directory = tmp_path / "mappings"
    directory.mkdir()
    monkeypatch.setattr(feature_frame, "MAPPINGS_DIR", directory)
    return directory
