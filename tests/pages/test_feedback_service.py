"""feedback_give: one verdict per author per lead, editable, reason required when bad."""

import pytest

from scoring.models import Feedback
from scoring.services.feedback import FeedbackInvalid, feedback_give
from tests.pages.factories import ScoredLeadFactory


@pytest.fixture
def lead(role_users):
    return ScoredLeadFactory(owner=role_users["sales1"], score=62, band="MQL")


def test_it_records_the_verdict_with_the_leads_band_and_score_at_the_time(lead, role_users):
    feedback = feedback_give(lead, role_users["sales1"], "bad", "no_budget", "  said so  ")
    feedback.refresh_from_db()
    assert (feedback.verdict, feedback.reason, feedback.note) == ("bad", "no_budget", "said so")
    assert (feedback.band, feedback.score) == ("MQL", 62)
    assert feedback.author == role_users["sales1"]


def test_it_reads_the_band_from_the_database_not_a_stale_object(lead, role_users):
    type(lead).objects.filter(pk=lead.pk).update(score=85, band="Hot")
    feedback = feedback_give(lead, role_users["sales1"], "good")
    assert (feedback.band, feedback.score) == ("Hot", 85)


def test_giving_it_again_edits_the_authors_verdict_and_keeps_one_row(lead, role_users):
    first = feedback_give(lead, role_users["sales1"], "bad", "competitor")
    second = feedback_give(lead, role_users["sales1"], "good", "", "was wrong")
    assert first.pk == second.pk
    assert Feedback.objects.filter(lead=lead).count() == 1
    assert Feedback.objects.get().verdict == "good"


def test_each_author_has_their_own_verdict(lead, role_users):
    feedback_give(lead, role_users["sales1"], "bad", "competitor")
    feedback_give(lead, role_users["manager"], "good")
    assert Feedback.objects.filter(lead=lead).count() == 2


def test_every_change_is_audited_with_old_and_new_values(lead, role_users):
    feedback = feedback_give(lead, role_users["sales1"], "bad", "competitor")
    feedback_give(lead, role_users["sales1"], "bad", "spam_or_fake")
    history = list(feedback.history.order_by("history_id").values_list("reason", flat=True))
    assert history == ["competitor", "spam_or_fake"]


@pytest.mark.parametrize(
    ("verdict", "reason", "note", "field"),
    [
        ("bad", "", "", "reason"),
        ("bad", None, "", "reason"),
        ("meh", "", "", "verdict"),
        ("bad", "too_expensive", "", "reason"),
        ("good", "", "x" * 2001, "note"),
    ],
)
def test_bad_input_is_refused_and_nothing_is_written(
    lead, role_users, verdict, reason, note, field
):
    with pytest.raises(FeedbackInvalid) as caught:
        feedback_give(lead, role_users["sales1"], verdict, reason, note)
    assert field in caught.value.errors
    assert not Feedback.objects.exists()


def test_a_good_verdict_needs_no_reason(lead, role_users):
    assert feedback_give(lead, role_users["sales1"], "good").reason == ""
