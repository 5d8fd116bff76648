"""The groups editor field by field: GroupsFieldsForm turns rows into the groups document,
drops empty rows, and puts the engine's issues (from draft_groups_save) beside the inputs;
the rule-set page saves through it."""

from __future__ import annotations

from scoring.forms import GroupsFieldsForm
from tests.rules.test_groups_editor import GROUPS

FIT_AND_ENGAGEMENT = {
    "g0-name": "fit", "g0-cap": "50", "g0-floor": "0",
    "g0-b0-name": "A", "g0-b0-min_score": "40",
    "g0-b3-name": "B", "g0-b3-min_score": "0",  # numbers may have gaps (rows removed)
    "g2-name": "engagement", "g2-cap": "60", "g2-floor": "",
    "g2-b0-name": "1", "g2-b0-min_score": "30",
    "g2-b1-name": "2", "g2-b1-min_score": "0",
    "g2-b2-name": "", "g2-b2-min_score": "",  # an empty band row: dropped
    "g5-name": "", "g5-cap": "", "g5-floor": "",  # an empty group row: dropped
    "grid_row": "fit", "grid_column": "engagement",
    "account_method": "", "account_k": "", "account_cap": "",
}  # fmt: skip


def test_rows_become_the_groups_document_in_order_without_the_empty_ones():
    form = GroupsFieldsForm(FIT_AND_ENGAGEMENT)
    assert form.is_valid(), form.errors
    assert form.document() == GROUPS


def test_the_account_roll_up_fields_become_its_object():
    form = GroupsFieldsForm(
        {
            "account_method": "top_k_mean", "account_k": "3", "account_cap": "100",
            "account-b0-name": "Tier 1", "account-b0-min_score": "60",
            "account-b1-name": "Tier 2", "account-b1-min_score": "0",
        }
    )  # fmt: skip
    assert form.is_valid(), form.errors
    assert form.document() == {
        "account": {"method": "top_k_mean", "k": 3, "cap": 100, "bands": [
            {"name": "Tier 1", "min_score": 60}, {"name": "Tier 2", "min_score": 0}]}
    }  # fmt: skip


def test_unbound_it_shows_the_document_it_is_given_and_round_trips():
    document = {**GROUPS, "account": {"method": "max", "bands": [{"name": "Hot", "min_score": 50}]}}
    shown = GroupsFieldsForm(document=document)
    rows = shown.group_rows()
    assert [r["name"].value() for r in rows] == ["fit", "engagement"]
    assert [b["min_score"].value() for b in rows[0]["bands"]] == [40, 0]
    assert (shown.next_group, rows[1]["next_band"]) == (2, 2)
    again = GroupsFieldsForm({k: "" if v is None else v for k, v in shown.initial.items()})
    assert again.is_valid(), again.errors
    assert again.document() == document


def test_the_grid_offers_only_the_group_names_typed_in_the_same_form():
    form = GroupsFieldsForm({**FIT_AND_ENGAGEMENT, "grid_column": "intent"})
    assert not form.is_valid()
    assert "grid_column" in form.errors
    assert [v for v, _ in form.fields["grid_row"].choices] == ["", "fit", "engagement"]


def test_a_non_number_is_refused_on_its_own_input():
    form = GroupsFieldsForm({**FIT_AND_ENGAGEMENT, "g2-b1-min_score": "lots"})
    assert not form.is_valid()
    assert list(form.errors) == ["g2-b1-min_score"]


def test_ops_saves_the_fields_and_the_engines_errors_come_back_beside_them(client_as, draft):
    ops = client_as("ops")
    page = ops.get(f"/rules/{draft.pk}/")
    assert 'data-testid="groups-fields"' in page.content.decode()

    # Two bands of "engagement" share a min score, and a group floor exceeds its cap: the
    # engine's messages land on those inputs, nothing is saved.
    bad = {**FIT_AND_ENGAGEMENT, "editor": "fields", "g2-b1-min_score": "30", "g0-floor": "70"}
    response = ops.post(f"/rules/{draft.pk}/groups/", bad)
    assert response.status_code == 400
    form = response.context["groups_fields"]
    assert "duplicates the min_score" in " ".join(form.errors["g2-b1-min_score"])
    assert "must not exceed cap" in " ".join(form.errors["g0-floor"])
    draft.refresh_from_db()
    assert draft.groups == []

    response = ops.post(f"/rules/{draft.pk}/groups/", {**FIT_AND_ENGAGEMENT, "editor": "fields"})
    assert response.status_code == 302
    draft.refresh_from_db()
    assert (draft.groups, draft.grid) == (GROUPS["groups"], GROUPS["grid"])
    # The page shows the saved rows again.
    shown = ops.get(f"/rules/{draft.pk}/").context["groups_fields"]
    assert [r["name"].value() for r in shown.group_rows()] == ["fit", "engagement"]


def test_only_ops_may_save_the_fields(client_as, draft):
    for user in ("sales1", "manager"):
        response = client_as(user).post(
            f"/rules/{draft.pk}/groups/", {**FIT_AND_ENGAGEMENT, "editor": "fields"}
        )
        assert response.status_code == 403
