"""The other KPI endpoints on the known data set, each against a plain-Python computation."""

from __future__ import annotations

import datetime as dt

import pytest
from sklearn.metrics import roc_auc_score

from scoring.models import Lead, LeadProbability
from tests.kpis import dataset

START, END = dataset.PERIOD
QUALIFYING = {"MQL", "Hot"}


@pytest.fixture
def specs(db):
    return dataset.build()


@pytest.fixture
def api(client_as):
    client = client_as("manager")

    def get(endpoint: str, **params):
        params = {"start": START, "end": END, **params}
        response = client.get(f"/api/v1/kpis/{endpoint}/", params)
        assert response.status_code == 200, response.content
        return response.json()

    return get


def cohort(specs):
    return [s for s in specs if dataset.in_period(s, START, END)]


def test_funnel_counts_a_later_stage_as_reaching_the_earlier_ones(specs, api):
    rows = {row["stage"]: row for row in api("funnel")}
    leads = cohort(specs)

    def reached(*attrs):
        return sum(1 for s in leads if any(getattr(s, a) for a in attrs))

    expected = {
        "Lead": len(leads),
        "MQL": reached("mql_at", "sql_at", "opportunity_at", "converted"),
        "SQL": reached("sql_at", "opportunity_at", "converted"),
        "Opportunity": reached("opportunity_at", "converted"),
        "Customer": reached("converted"),
    }
    assert {stage: row["leads"] for stage, row in rows.items()} == expected
    assert rows["Customer"]["rate_from_previous"] == pytest.approx(
        expected["Customer"] / expected["Opportunity"]
    )
    assert rows["Customer"]["previous_stage_leads"] == expected["Opportunity"]
    assert rows["Lead"]["rate_from_previous"] is None


def test_qualification_precision_and_recall_use_the_band_before_conversion(specs, api):
    result = api("qualification")
    mqls = converters = hits = 0
    for spec in cohort(specs):
        band, _ = dataset.honest(spec, dataset.CUTOFF)
        mql_first = spec.mql_at is not None and (
            spec.converted is None or spec.mql_at < spec.converted
        )
        is_mql = band in QUALIFYING or mql_first
        mqls += is_mql
        converters += spec.converted is not None
        hits += is_mql and spec.converted is not None
    assert (result["mqls"], result["converters"], result["converted_mqls"]) == (
        mqls,
        converters,
        hits,
    )
    assert result["precision"] == pytest.approx(hits / mqls)
    assert result["recall"] == pytest.approx(hits / converters)
    assert result["threshold"] == 50
    # The trap converted while Cold and only reached MQL afterwards: not an MQL first.
    at_50 = next(row for row in result["curve"] if row["threshold"] == 50)
    scores = [
        (dataset.honest(s, dataset.CUTOFF)[1], s.converted is not None) for s in cohort(specs)
    ]
    over = [(score, conv) for score, conv in scores if score is not None and score >= 50]
    assert at_50["mqls"] == len(over)
    assert at_50["precision"] == pytest.approx(sum(c for _, c in over) / len(over))
    assert at_50["recall"] == pytest.approx(sum(c for _, c in over) / converters)
    weeks = 31 / 7
    assert at_50["mqls_per_week"] == pytest.approx(len(over) / weeks)


def test_lift_and_auc_use_scored_leads_with_a_known_outcome(specs, api):
    result = api("lift")
    known = [
        s
        for s in cohort(specs)
        if s.converted or s.disqualified_at or s.created < dataset.CUTOFF - dt.timedelta(days=90)
    ]
    scored = [(dataset.honest(s, dataset.CUTOFF)[1], s.converted is not None) for s in known]
    unscored = [x for x in scored if x[0] is None]
    scored = [x for x in scored if x[0] is not None]
    assert result["leads"] == len(scored)
    assert result["unscored_excluded"] == len(unscored)
    assert result["roc_auc"] == pytest.approx(
        roc_auc_score([c for _, c in scored], [s for s, _ in scored])
    )
    assert result["roc_auc"] == pytest.approx(0.8)  # only the Cold trap scored below the negative
    assert sum(d["leads"] for d in result["deciles"]) == len(scored)


def test_cycle_gives_quartiles_per_band(specs, api):
    rows = {row["band"]: row for row in api("cycle")}
    hot = rows["Hot"]
    assert hot["n"] == 3
    assert (hot["min"], hot["q1"], hot["median"], hot["q3"], hot["max"]) == pytest.approx(
        (3.75, 6.875, 10.0, 15.5, 21.0)
    )
    assert list(rows) == ["Cold", "Warm", "Hot", "Unscored"]


def test_revenue_by_band_is_won_revenue_with_its_n(specs, api):
    rows = {row["band"]: row for row in api("revenue")}
    assert rows["Hot"] == {
        "band": "Hot",
        "converted": 3,
        "revenue": 6500.5,
        "revenue_per_converter": pytest.approx(2166.83, abs=0.01),
    }
    assert rows["MQL"]["revenue_per_converter"] is None


def test_feedback_share_counts_leads_flagged_bad_per_band_at_the_verdict(specs, api):
    rows = {row["band"]: row for row in api("feedback")}
    assert {b: (r["reviewed"], r["bad"]) for b, r in rows.items()} == {
        "Cold": (2, 1),
        "MQL": (1, 0),
        "Hot": (2, 1),
    }
    assert rows["Cold"]["bad_share"] == 0.5


def test_band_entries_per_week_come_from_the_score_history(specs, api):
    rows = api("band-entries")
    expected: dict[tuple[str, str], int] = {}
    for spec in cohort(specs):
        for as_of, band, _ in spec.history:
            if dt.datetime(2024, 1, 1, tzinfo=dt.UTC) <= as_of < dataset.CUTOFF:
                monday = (as_of.date() - dt.timedelta(days=as_of.weekday())).isoformat()
                expected[(monday, band)] = expected.get((monday, band), 0) + 1
    assert {(r["week"], r["band"]): r["leads"] for r in rows} == expected


def test_calibration_uses_band_rates_until_every_lead_has_a_model_probability(specs, api):
    result = api("calibration")
    assert result["source"] == "band_rate"
    assert sum(d["leads"] for d in result["deciles"]) == 6
    LeadProbability.objects.bulk_create(
        LeadProbability(lead_id=lead_id, probability=0.3 if converted_at is None else 0.7)
        for lead_id, converted_at in Lead.objects.values_list("id", "converted_at")
    )
    result = api("calibration")
    assert result["source"] == "model"
    deciles = result["deciles"]
    assert sum(d["leads"] for d in deciles) == 8  # every known outcome, scored or not
    assert deciles[0]["predicted"] == pytest.approx(0.7)
    assert deciles[0]["observed"] == 1.0
    assert deciles[-1]["predicted"] == pytest.approx(0.3)
    assert deciles[-1]["observed"] == 0.0


def test_a_rule_set_version_filter_reads_only_that_versions_history(specs, api):
    # Version 2 wrote a single row for hot-open: with the filter, every other lead is unscored.
    from scoring.models import ScoreHistory

    hot_open = next(s for s in specs if s.key == "hot-open")
    ScoreHistory.objects.create(
        lead_id=hot_open.lead_id, as_of=dataset.at(12), score=20, band="Cold", rule_set_version=2
    )
    rows = {r["band"]: r["leads"] for r in api("bands", version=2)}
    # Version 2 has no rule set row: no scheme bands, only what the history holds.
    assert rows == {"Cold": 1, "Unscored": len(cohort(specs)) - 1}
