"""The feedback review: flags over time, by reason, band and persona, band shares, and the
rules over-represented among bad-flagged leads, each linking to its leads."""

import datetime as dt

import pytest
from django.utils import timezone

from scoring.models import Feedback
from scoring.selectors.feedback import feedback_review
from tests.pages.factories import FeedbackFactory, ScoredLeadFactory

BASE = {"kind": "attribute", "label": "employees >= 200", "points": 15.0}
STUDENT = {"kind": "attribute", "label": "title contains 'student'", "points": 10.0}
MODEL = {"kind": "model", "label": "model probability 0.10 at weight 0.3", "points": -2.0}


@pytest.fixture
def flagged(role_users):
    """10 scored leads; the two with the student rule and one other are flagged bad."""
    sales1, manager = role_users["sales1"], role_users["manager"]
    leads = [
        ScoredLeadFactory(owner=sales1, band="Warm", persona="Dev", breakdown=[BASE, MODEL])
        for _ in range(8)
    ]
    students = [
        ScoredLeadFactory(owner=sales1, band="Hot", persona="Student", breakdown=[BASE, STUDENT])
        for _ in range(2)
    ]
    for lead in students:
        FeedbackFactory(lead=lead, author=sales1, reason="student_or_personal", band="Hot")
    FeedbackFactory(lead=students[0], author=manager, reason="student_or_personal", band="Hot")
    FeedbackFactory(lead=leads[0], author=sales1, reason="no_budget", band="Warm")
    FeedbackFactory(lead=leads[1], author=sales1, verdict="good", reason="", band="Warm")
    old = FeedbackFactory(lead=leads[2], author=sales1, reason="competitor", band="Warm")
    Feedback.objects.filter(pk=old.pk).update(created_at=timezone.now() - dt.timedelta(days=200))
    return {"leads": leads, "students": students}


def test_bad_flags_are_counted_by_reason_band_and_persona(flagged):
    review = feedback_review(since=timezone.localdate() - dt.timedelta(days=90))
    assert [(r["reason"], r["count"]) for r in review.by_reason] == [
        ("student_or_personal", 3),
        ("no_budget", 1),
    ]
    assert [(r["band"], r["bad"], r["good"]) for r in review.by_band] == [
        ("Hot", 3, 0),
        ("Warm", 1, 1),
    ]
    assert [(r["persona"], r["bad"]) for r in review.by_persona] == [("Student", 3), ("Dev", 1)]
    assert review.total_flags == 5
    assert sum(r["bad"] for r in review.over_time) == 4


def test_all_time_includes_older_flags(flagged):
    review = feedback_review(since=None)
    assert review.total_flags == 6
    assert "competitor" in {r["reason"] for r in review.by_reason}


def test_the_share_of_each_band_flagged_bad_counts_leads_not_flags(flagged):
    shares = {r["band"]: r for r in feedback_review(since=None).band_share}
    assert (shares["Hot"]["leads"], shares["Hot"]["flagged_bad"]) == (2, 2)
    assert shares["Hot"]["share"] == 1.0
    assert (shares["Warm"]["leads"], shares["Warm"]["flagged_bad"]) == (8, 2)


def test_rules_over_represented_among_bad_leads_come_first_with_their_lift(flagged):
    review = feedback_review(since=timezone.localdate() - dt.timedelta(days=90))
    rows = {r["label"]: r for r in review.rule_lift}
    assert review.rule_lift[0]["label"] == STUDENT["label"]
    assert rows[STUDENT["label"]]["lift"] == pytest.approx((2 / 3) / (2 / 10))
    assert rows[BASE["label"]]["lift"] == pytest.approx(1.0)
    assert MODEL["label"] not in rows
    assert review.baseline_leads == 10
    assert not review.baseline_sampled


def test_each_row_links_to_the_leads_behind_it(client_as, flagged):
    client = client_as("ops")
    review = feedback_review(since=None)
    student_ids = {lead.pk for lead in flagged["students"]}
    # Flagged bad, then disqualified: still behind the numbers (the links list every stage).
    from scoring.models import Lead

    Lead.objects.filter(pk=flagged["students"][0].pk).update(lifecycle_stage="disqualified")

    def ids(link):
        response = client.get(link)
        assert response.status_code == 200
        return {row["id"] for row in response.context["page"].rows}

    lift_row = next(r for r in review.rule_lift if r["label"] == STUDENT["label"])
    assert ids(lift_row["link"]) == student_ids
    reason_row = next(r for r in review.by_reason if r["reason"] == "student_or_personal")
    assert ids(reason_row["link"]) == student_ids
    band_row = next(r for r in review.by_band if r["band"] == "Hot")
    assert ids(band_row["link"]) == student_ids
    share_row = next(r for r in review.band_share if r["band"] == "Warm")
    assert ids(share_row["link"]) == {flagged["leads"][0].pk, flagged["leads"][2].pk}
    week_ids = set().union(*(ids(r["link"]) for r in review.over_time))
    assert week_ids == student_ids | {flagged["leads"][0].pk, flagged["leads"][2].pk}


def test_the_page_renders_every_section(client_as, flagged):
    response = client_as("manager").get("/feedback/?period=all")
    assert response.status_code == 200
    html = response.content.decode()
    for testid in ("flags-over-time", "by-reason", "by-band", "by-persona", "band-share"):
        assert f'data-testid="{testid}"' in html
    assert "title contains &#x27;student&#x27;" in html
    assert '<script id="flags-figure" type="application/json">' in html


def test_an_unknown_period_falls_back_to_ninety_days(client_as, flagged):
    response = client_as("ops").get("/feedback/?period=forever")
    assert response.context["period"] == "90"


def test_an_empty_review_renders(client_as):
    response = client_as("ops").get("/feedback/")
    assert response.status_code == 200
    assert b"No feedback in this period." in response.content


def test_shares_are_percentages_with_their_n_and_a_lift_on_few_flags_is_hidden(client_as, flagged):
    html = client_as("manager").get("/feedback/?period=all").content.decode()
    rule_lift = html[html.index('data-testid="rule-lift"') :]
    # Three bad leads: far below 30, so no lift number, just its n.
    assert "\u2013 (n=2, too few)" in rule_lift
    assert "3.33" not in rule_lift
    band_share = html[html.index('data-testid="band-share"') : html.index('id="rule-lift"')]
    assert "100.0% <span" in band_share and "n=2" in band_share
    assert "1.0</td>" not in band_share


def test_lifts_on_enough_bad_leads_come_before_the_noisy_ones():
    from scoring.formatting import ratio

    assert ratio(1.4213, 57) == "1.42 (n=57)"
    assert ratio(14.76, 1) == "\u2013 (n=1, too few)"
    assert ratio(None, 40) == "\u2013 (n=40)"
