"""A sales rep's main flow in a real browser: open the top lead from the queue, read why it
scored what it did, flag it bad with a reason."""

import datetime as dt

import pytest
from django.utils import timezone

from scoring.models import Feedback
from tests.pages.factories import SAMPLE_BREAKDOWN, ScoredLeadFactory, ScoreHistoryFactory

# The sample breakdown (37 points) plus two demo requests: 88 points, a Hot lead.
DEMO_REQUESTS = {
    "rule": 5,
    "kind": "event",
    "label": "demo_request in 30 d",
    "points": 51.0,
    "count": 2,
    "decayed_sum": 2.0,
    "capped": False,
    "points_per_event": 25.5,
}

pytestmark = pytest.mark.browser


@pytest.fixture
def leads(role_users):
    sales1 = role_users["sales1"]
    top = ScoredLeadFactory(
        owner=sales1,
        score=88,
        band="Hot",
        first_name="Grace",
        last_name="Hopper",
        company="Navy Labs",
        email="grace@navy.test",
        breakdown=[*SAMPLE_BREAKDOWN, DEMO_REQUESTS],
    )
    for days, score, band in ((40, 12, "Cold"), (20, 41, "Warm"), (5, 88, "Hot")):
        ScoreHistoryFactory(
            lead=top, score=score, band=band, as_of=timezone.now() - dt.timedelta(days=days)
        )
    others = [
        ScoredLeadFactory(owner=sales1, score=40, band="Warm"),
        ScoredLeadFactory(owner=sales1, score=10, band="Cold"),
        # Another rep's lead scores higher but is not in this rep's queue.
        ScoredLeadFactory(owner=role_users["sales2"], score=99, band="Hot"),
    ]
    return {"top": top, "others": others}


def test_a_sales_rep_flags_the_top_lead_bad_with_a_reason(page, login, screenshot, leads):
    top = leads["top"]
    login(page, "sales1")
    screenshot(page, "1-home")

    page.get_by_role("link", name="Leads").first.click()
    page.wait_for_url("**/leads/")
    first_row = page.locator("table.queue tbody tr").first
    assert first_row.get_attribute("data-lead-id") == str(top.pk)
    screenshot(page, "2-queue")

    first_row.get_by_role("link", name="Grace Hopper").click()
    page.wait_for_url(f"**/leads/{top.pk}/")
    breakdown = page.get_by_test_id("breakdown")
    assert "employees >= 200" in breakdown.inner_text()
    assert (
        "5 events, decayed sum 4.3125 \u00d7 5 pts = 21.56, capped at 20" in breakdown.inner_text()
    )
    assert "2 events \u00d7 25.5 pts = 51" in breakdown.inner_text()
    assert "Sum 88, rounded to the score 88." in breakdown.inner_text()
    assert page.get_by_test_id("lead-score").inner_text() == "88"
    # plotly.js (served locally) drew the score history.
    page.locator("#history-title ~ .chart .main-svg").first.wait_for()
    screenshot(page, "3-breakdown")

    page.select_option("#fb-reason", "spam_or_fake")
    page.fill("#fb-note", "Fake company, bounced email")
    page.get_by_role("button", name="Bad lead").click()
    page.get_by_text("Your feedback is saved.").wait_for()
    listed = page.get_by_test_id("feedback-list").inner_text()
    assert "Bad lead" in listed and "Spam or fake" in listed and "by sales1" in listed
    screenshot(page, "4-flagged")

    feedback = Feedback.objects.get(lead=top)
    assert (feedback.verdict, feedback.reason, feedback.author.username) == (
        "bad",
        "spam_or_fake",
        "sales1",
    )
    assert feedback.note == "Fake company, bounced email"
    assert (feedback.band, feedback.score) == ("Hot", 88)

    page.reload()
    assert "Spam or fake" in page.get_by_test_id("feedback-list").inner_text()


def test_a_bad_flag_without_a_reason_is_refused_beside_the_field(page, login, leads):
    login(page, "sales1")
    page.goto(f"/leads/{leads['top'].pk}/")
    page.get_by_role("button", name="Bad lead").click()
    page.get_by_text("A bad lead needs a reason.").wait_for()
    assert not Feedback.objects.exists()


def test_a_rep_marks_a_lead_good_from_the_queue(page, login, screenshot, leads):
    login(page, "sales1")
    page.goto("/leads/")
    row = page.locator(f"tr[data-lead-id='{leads['top'].pk}']")
    row.get_by_role("button", name=f"Good lead {leads['top'].pk}").click()
    row.locator(".badge.verdict-good").wait_for()
    screenshot(page, "queue-good")
    assert Feedback.objects.get().verdict == "good"


def test_a_rep_works_the_queue_top_down_with_next_lead(page, login, screenshot, role_users):
    sales1 = role_users["sales1"]
    yesterday = timezone.now() - dt.timedelta(days=1)
    ScoredLeadFactory(owner=sales1, score=100, band="Hot", lifecycle_stage="customer")
    ScoredLeadFactory(owner=sales1, score=99, band="Hot", lifecycle_stage="disqualified")
    new = ScoredLeadFactory(
        owner=sales1,
        score=55,
        band="MQL",
        lifecycle_stage="mql",
        qualified=True,
        mql_at=yesterday,
        first_name="Nora",
        last_name="New",
    )
    top = ScoredLeadFactory(owner=sales1, score=90, band="Hot", first_name="Tia", last_name="Top")
    low = ScoredLeadFactory(owner=sales1, score=20, band="Cold", first_name="Lou", last_name="Low")

    login(page, "sales1")
    page.goto("/leads/")
    rows = page.locator("table.queue tbody tr")
    # Open leads only, the untouched new MQL first, then by score.
    assert [rows.nth(i).get_attribute("data-lead-id") for i in range(rows.count())] == [
        str(new.pk),
        str(top.pk),
        str(low.pk),
    ]
    assert page.get_by_test_id("count-new-mqls").inner_text() == "1"
    assert rows.first.get_by_text("New MQL").is_visible()

    # Opening "Bad…" lays the form over the table: no row moves.
    before = rows.nth(1).bounding_box()
    rows.first.get_by_text("Bad…").click()
    rows.first.locator(".popover select").wait_for()
    after = rows.nth(1).bounding_box()
    assert (before["x"], before["y"], before["width"]) == (after["x"], after["y"], after["width"])
    screenshot(page, "5-queue-popover")
    rows.first.get_by_text("Bad…").click()

    rows.first.get_by_role("link", name="Nora New").click()
    page.wait_for_url(f"**/leads/{new.pk}/")
    page.get_by_role("button", name="Good lead").click()
    page.get_by_text("Your feedback is saved.").wait_for()
    page.get_by_test_id("next-lead").click()
    page.wait_for_url(f"**/leads/{top.pk}/")
    page.select_option("#fb-reason", "no_budget")
    page.get_by_role("button", name="Bad lead").click()
    page.get_by_text("Your feedback is saved.").wait_for()
    page.get_by_test_id("next-lead").click()
    page.wait_for_url(f"**/leads/{low.pk}/")
    assert page.get_by_test_id("next-lead").inner_text() == "Last lead in the queue."
    screenshot(page, "6-last-lead")
    verdicts = dict(Feedback.objects.values_list("lead_id", "verdict"))
    assert verdicts == {new.pk: "good", top.pk: "bad"}

    # All stages on request: the closed leads come back.
    page.goto("/leads/")
    page.locator("[data-preset=all]").click()
    page.wait_for_url("**/leads/?stage=all")
    assert page.locator("table.queue tbody tr").count() == 5
