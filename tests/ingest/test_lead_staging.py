"""The staged lead import on PostgreSQL (integrations.lead_staging) gives the same leads,
identities, merges and counts as the chunked generic path, for new, changed, unchanged,
duplicated, conflicting and bad rows, in atomic and non-atomic mode."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.auth.models import User
from django.db import connection

from integrations import imports
from integrations.imports import import_file
from scoring.models import Identity, Lead, LeadMerge, PendingRescore

pytestmark = pytest.mark.postgres

HEADER = "external_id,email,first_name,company,employees,owner,converted_at,lifecycle_stage,plan"
ROWS = [
    # plain new lead, attribute as a number
    "n-1,New1@Example.com ,Ann,Acme,5,,,,3",
    # plain new lead without identity
    ",new2@example.com,Bo,,,,,,",
    # new lead by identity only; converted_at without a stage makes a customer
    "n-3,,Cy,,,,2024-05-01,,",
    # existing lead found by identity: company changes, attributes merge
    "old-1,,,NewCo,,rep,,,pro",
    # existing lead found by email, nothing changes
    ",stay@example.com,Stay,,,,,,",
    # existing lead found by email, stage changes
    ",stage@example.com,,,,,,mql,",
    # identity points at one stored lead, email at another: merged (generic path)
    "old-2,other@example.com,Merge,,,,,,",
    # the same email twice in the file: the later row wins
    "d-1,dup@example.com,First,,,,,,",
    "d-2,DUP@example.com,Second,,,,,,",
    # the same identity twice
    "t-1,,Once,,,,,,",
    "t-1,,Twice,,,,,,",
    # bad rows
    "b-1,not-an-email,,,,,,,",
    "b-2,b2@example.com,,,many,,,,",
    "b-3,b3@example.com,,,,nobody,,,",
    # changes a stored lead's email to a new one
    "old-3,renamed@example.com,,,,,,,",
]


def _seed() -> None:
    owner = User.objects.create_user("rep")
    first = Lead.objects.create(email="old1@example.com", company="OldCo", attributes={"a": 1})
    Identity.objects.create(source="crm", external_id="old-1", lead=first)
    Lead.objects.create(email="stay@example.com", first_name="Stay")
    Lead.objects.create(email="stage@example.com")
    second = Lead.objects.create(email="old2@example.com")
    Identity.objects.create(source="crm", external_id="old-2", lead=second)
    Lead.objects.create(email="other@example.com", company="Other")
    third = Lead.objects.create(email="old3@example.com")
    Identity.objects.create(source="crm", external_id="old-3", lead=third)
    assert owner.pk


def _reset() -> None:
    PendingRescore.objects.all().delete()
    LeadMerge.objects.all().delete()
    Identity.objects.all().delete()
    Lead.objects.all().delete()
    User.objects.filter(username="rep").delete()


def _snapshot() -> dict:
    """Every lead by email (or identity), without ids and write times."""
    identities = {}
    for identity in Identity.objects.all():
        identities.setdefault(identity.lead_id, []).append(
            f"{identity.source}:{identity.external_id}"
        )
    leads = {}
    for lead in Lead.objects.all():
        key = lead.email or ",".join(sorted(identities.get(lead.pk, [])))
        leads[key] = {
            "first_name": lead.first_name,
            "company": lead.company,
            "employees": lead.employees,
            "owner": lead.owner.username if lead.owner else None,
            "stage": lead.lifecycle_stage,
            "converted_at": lead.converted_at,
            "attributes": lead.attributes,
            "identities": sorted(identities.get(lead.pk, [])),
            "pending": PendingRescore.objects.filter(lead_id=lead.pk).exists(),
        }
    return {"leads": leads, "merges": LeadMerge.objects.count()}


def _run(tmp_path, monkeypatch, staged: bool, *, atomic: bool = False, rows=ROWS):
    monkeypatch.setattr(imports, "STAGED_LEADS", staged)
    _reset()
    _seed()
    path = tmp_path / "leads.csv"
    path.write_text("\n".join([HEADER, *rows]) + "\n")
    summary = import_file(path, "leads", source="crm", atomic=atomic).as_dict()
    return summary, _snapshot()


def test_staged_import_equals_the_generic_path(tmp_path, db, monkeypatch):
    generic_summary, generic = _run(tmp_path, monkeypatch, staged=False)
    staged_summary, staged = _run(tmp_path, monkeypatch, staged=True)
    assert staged_summary == generic_summary
    assert staged == generic
    # What the file says, spelled out (so both paths being wrong the same way fails too).
    assert (staged_summary["created"], staged_summary["rejected"]) == (5, 3)
    assert [e["line"] for e in staged_summary["errors"]] == [13, 14, 15]
    leads = staged["leads"]
    assert leads["new1@example.com"]["attributes"] == {"plan": 3}
    assert leads["crm:n-3"]["stage"] == "customer"
    assert leads["crm:n-3"]["converted_at"] == dt.datetime(2024, 5, 1, tzinfo=dt.UTC)
    assert leads["old1@example.com"]["company"] == "NewCo"
    assert leads["old1@example.com"]["owner"] == "rep"
    assert leads["old1@example.com"]["attributes"] == {"a": 1, "plan": "pro"}
    assert leads["stay@example.com"]["pending"] is False
    assert leads["stage@example.com"]["stage"] == "mql"
    assert leads["stage@example.com"]["pending"] is True
    assert leads["dup@example.com"]["first_name"] == "Second"
    assert leads["crm:t-1"]["first_name"] == "Twice"
    assert "old2@example.com" not in leads and staged["merges"] == 1
    assert leads["other@example.com"]["identities"] == ["crm:old-2"]
    assert "renamed@example.com" in leads and "old3@example.com" not in leads


def test_a_row_reaching_a_lead_that_another_row_merges_away_waits_for_the_merge(
    tmp_path, db, monkeypatch
):
    # Row 1's identity names old1@ and its email old2@ (a merge); row 2 reaches old2@ by its
    # own identity. Written before the merge, row 2's change would be lost in it.
    rows = ["old-1,old2@example.com,,,,,,,", "old-2,,,Renamed Co,,,,,"]
    generic_summary, generic = _run(tmp_path, monkeypatch, staged=False, rows=rows)
    staged_summary, staged = _run(tmp_path, monkeypatch, staged=True, rows=rows)
    assert staged_summary == generic_summary
    assert staged == generic
    survivor = next(lead for lead in staged["leads"].values() if "crm:old-2" in lead["identities"])
    assert survivor["company"] == "Renamed Co"
    assert staged["merges"] == 1


def test_staged_reimport_changes_nothing(tmp_path, db, monkeypatch):
    first, _ = _run(tmp_path, monkeypatch, staged=True)
    PendingRescore.objects.all().delete()
    again = import_file(tmp_path / "leads.csv", "leads", source="crm")
    assert (again.created, again.updated, again.rejected) == (0, 0, 3)
    assert again.unchanged == first["created"] + first["updated"] + first["unchanged"]
    assert not PendingRescore.objects.exists()


def test_staged_atomic_import_with_a_bad_row_writes_nothing(tmp_path, db, monkeypatch):
    summary, after = _run(tmp_path, monkeypatch, staged=True, atomic=True)
    assert summary["status"] == "rolled_back"
    assert summary["rejected"] == 3
    _reset()
    _seed()
    assert after == _snapshot()


def test_staged_atomic_import_of_good_rows(tmp_path, db, monkeypatch):
    good = [row for row in ROWS if not row.startswith("b-")]
    summary, after = _run(tmp_path, monkeypatch, staged=True, atomic=True, rows=good)
    assert summary["status"] == "done"
    assert summary["created"] == 5
    assert "dup@example.com" in after["leads"]


@pytest.mark.django_db(transaction=True)
def test_staged_import_in_autocommit_reports_progress_and_drops_its_table(tmp_path, monkeypatch):
    monkeypatch.setattr(imports, "CHUNK_ROWS", 4)
    seen = []
    path = tmp_path / "leads.csv"
    path.write_text("external_id,email\n" + "".join(f"p-{i},p{i}@example.com\n" for i in range(10)))
    summary = import_file(
        path, "leads", source="crm", progress=lambda done, total, s: seen.append((done, total))
    )
    assert summary.created == 10
    assert seen == [(4, 10), (8, 10), (10, 10)]
    assert Lead.objects.count() == 10
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass('pg_temp.import_lead_stage')")
        assert cursor.fetchone()[0] is None


def test_a_row_rejected_by_the_generic_pass_is_reported_among_the_first_lines(
    tmp_path, db, monkeypatch
):
    # Lines 2 and 3 give one new email to two stored leads: the generic pass (which sees
    # them after the 30 bad rows were read) rejects line 3, and the report still lists it.
    a = Lead.objects.create(email="a@example.com")
    b = Lead.objects.create(email="b@example.com")
    Identity.objects.create(source="crm", external_id="ia", lead=a)
    Identity.objects.create(source="crm", external_id="ib", lead=b)
    rows = ["ia,c@example.com", "ib,c@example.com"]
    rows += [f"bad-{i},not-an-email-{i}" for i in range(30)]
    path = tmp_path / "leads.csv"
    path.write_text("external_id,email\n" + "\n".join(rows) + "\n")
    staged = import_file(path, "leads", source="crm").as_dict()
    assert staged["rejected"] == 31
    lines = [e["line"] for e in staged["errors"]]
    assert lines[0] == 3 and lines == sorted(lines) and len(lines) == 20
    assert "belongs to another lead" in staged["errors"][0]["reasons"][0]


def test_a_value_the_staging_table_cannot_hold_goes_the_generic_way(db):
    from django.db import transaction

    from integrations.lead_staging import LeadStage
    from scoring.services.leads import LeadUpsert

    naive = LeadUpsert(
        source="crm", external_id="x", values={"created_at": dt.datetime(2024, 1, 1)}
    )
    plain = LeadUpsert(source="crm", external_id="y", values={"email": "Y@Example.com"})
    with transaction.atomic(), LeadStage() as stage:
        stage.add(2, naive)
        stage.add(3, plain)
        counts = stage.apply()
        assert counts == {"created": 1, "updated": 0, "unchanged": 0}
        assert list(stage.entangled_rows()) == [(2, naive)]
    assert Lead.objects.get(email="y@example.com")
