"""Giving feedback from the lead page and the queue (htmx fragments and plain posts)."""

import pytest
from django.test import Client

from scoring.models import Feedback
from tests.pages.factories import FeedbackFactory, ScoredLeadFactory

HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def lead(role_users):
    return ScoredLeadFactory(owner=role_users["sales1"], score=70, band="MQL")


def test_a_bad_flag_from_the_lead_page_swaps_in_the_updated_panel(client_as, lead):
    response = client_as("sales1").post(
        f"/leads/{lead.pk}/feedback/",
        {"verdict": "bad", "reason": "student_or_personal", "note": "gmail student"},
        **HTMX,
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert html.lstrip().startswith('<section class="card" id="feedback"')
    assert "Your feedback is saved." in html
    assert "Student or personal" in html and "by sales1" in html
    feedback = Feedback.objects.get()
    assert (feedback.verdict, feedback.reason, feedback.note) == (
        "bad",
        "student_or_personal",
        "gmail student",
    )
    assert (feedback.band, feedback.score) == ("MQL", 70)


def test_a_bad_flag_without_a_reason_shows_the_error_beside_the_field(client_as, lead):
    response = client_as("sales1").post(
        f"/leads/{lead.pk}/feedback/", {"verdict": "bad", "note": "keep me"}, **HTMX
    )
    html = response.content.decode()
    assert "A bad lead needs a reason." in html
    assert 'aria-invalid="true"' in html
    assert "keep me" in html
    assert not Feedback.objects.exists()


def test_the_author_edits_their_verdict_and_the_form_is_prefilled(client_as, lead, role_users):
    FeedbackFactory(lead=lead, author=role_users["sales1"], reason="competitor")
    client = client_as("sales1")
    page = client.get(f"/leads/{lead.pk}/").content.decode()
    assert '<option value="competitor" selected>' in page
    assert "Change your verdict" in page
    client.post(f"/leads/{lead.pk}/feedback/", {"verdict": "good"}, **HTMX)
    assert Feedback.objects.get().verdict == "good"


def test_a_plain_form_post_redirects_back_to_the_lead(client_as, lead):
    response = client_as("sales1").post(f"/leads/{lead.pk}/feedback/", {"verdict": "good"})
    assert response.status_code == 302
    assert response["Location"] == f"/leads/{lead.pk}/"
    assert Feedback.objects.get().verdict == "good"


def test_from_the_queue_the_rows_cell_is_swapped(client_as, lead):
    response = client_as("sales1").post(
        f"/leads/{lead.pk}/feedback/",
        {"verdict": "bad", "reason": "no_budget", "context": "queue"},
        **HTMX,
    )
    html = response.content.decode()
    assert html.lstrip().startswith(f'<div class="queue-feedback" id="queue-feedback-{lead.pk}"')
    assert "No budget" in html


def test_another_reps_lead_is_not_found_and_nothing_is_written(client_as, lead):
    response = client_as("sales2").post(f"/leads/{lead.pk}/feedback/", {"verdict": "good"})
    assert response.status_code == 404
    assert not Feedback.objects.exists()


def test_a_post_without_the_csrf_token_is_refused(role_users, lead):
    client = Client(enforce_csrf_checks=True)
    client.force_login(role_users["sales1"])
    response = client.post(f"/leads/{lead.pk}/feedback/", {"verdict": "good"}, **HTMX)
    assert response.status_code == 403
    assert not Feedback.objects.exists()


def test_the_page_carries_the_csrf_token_for_htmx(client_as, lead):
    html = client_as("sales1").get(f"/leads/{lead.pk}/").content.decode()
    assert 'hx-headers=\'{"X-CSRFToken": "' in html


def test_get_is_not_allowed_on_the_feedback_endpoint(client_as, lead):
    assert client_as("sales1").get(f"/leads/{lead.pk}/feedback/").status_code == 405
