"""CSV/JSONL import of leads and events: canonical columns, rejected lines with their line
numbers, atomic imports, file-level failures before writing, idempotent re-import, the
shipped X Education mapping, and the commands' one-line JSON summary."""

from __future__ import annotations

import datetime as dt
import json
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from integrations.imports import ImportFailed, import_file, load_mapping
from scoring.models import Event, Identity, Lead
from tests.factories import IdentityFactory, LeadFactory

FIXTURES = Path(__file__).parent / "fixtures"
HEADER = (
    "external_id,email,first_name,company,employees,country,lifecycle_stage,created_at,"
    "converted_at,revenue,plan,seats,score_hint"
)


def write(tmp_path: Path, text: str, name: str = "leads.csv", encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding=encoding)
    return path


def leads_csv(tmp_path: Path, *rows: str) -> Path:
    return write(tmp_path, "\n".join([HEADER, *rows]) + "\n")


GOOD = [
    "c-1,Ann@Example.com,Ann,Acme,250,Germany,mql,2024-01-05T10:00:00Z,,,pro,12,0.5",
    "c-2,bob@example.com,Bob,Beta,,France,,2024-02-01,2024-03-01T00:00:00+01:00,1200.50,,3,",
]


def test_canonical_columns_create_leads_with_identities(tmp_path, db):
    summary = import_file(leads_csv(tmp_path, *GOOD), "leads", source="crm")
    assert summary.as_dict() | {"errors": []} == {
        "file": "leads.csv",
        "kind": "leads",
        "status": "done",
        "rows": 2,
        "created": 2,
        "updated": 0,
        "unchanged": 0,
        "rejected": 0,
        "errors": [],
    }
    ann = Lead.objects.get(email="ann@example.com")
    assert (ann.first_name, ann.company, ann.employees, ann.lifecycle_stage) == (
        "Ann",
        "Acme",
        250,
        "mql",
    )
    assert ann.created_at == dt.datetime(2024, 1, 5, 10, tzinfo=dt.UTC)
    assert Identity.objects.get(source="crm", external_id="c-1").lead == ann


def test_unknown_columns_become_attributes_with_numbers_as_numbers(tmp_path, db):
    import_file(leads_csv(tmp_path, *GOOD), "leads")
    ann = Lead.objects.get(email="ann@example.com")
    assert ann.attributes == {"plan": "pro", "seats": 12, "score_hint": 0.5}
    bob = Lead.objects.get(email="bob@example.com")
    # Empty cells are missing, not empty strings.
    assert bob.attributes == {"seats": 3}
    assert bob.employees is None


def test_converted_at_makes_the_lead_a_customer_then(tmp_path, db):
    import_file(leads_csv(tmp_path, *GOOD), "leads")
    bob = Lead.objects.get(email="bob@example.com")
    assert bob.lifecycle_stage == "customer"
    assert bob.converted_at == dt.datetime(2024, 2, 29, 23, tzinfo=dt.UTC)
    assert bob.revenue == 1200.5
    # A date alone means midnight in the project's time zone (UTC in tests).
    assert bob.created_at == dt.datetime(2024, 2, 1, tzinfo=dt.UTC)


BAD_ROWS = [
    ("c-3,not-an-email,,,,,,,,,,,", "email: 'not-an-email' is not an email address"),
    ("c-3,c3@example.com,,,many,,,,,,,,", "employees: 'many' is not a whole number"),
    ("c-3,c3@example.com,,,,,,last tuesday,,,,,", "created_at: 'last tuesday' is not an ISO"),
    ("c-3,c3@example.com,,,,,,,,lots,,,", "revenue: 'lots' is not a number"),
    ("c-3,c3@example.com,,,,,prospect,,,,,,", "lifecycle_stage: 'prospect' is not one of"),
    (",,Nobody,,,,,,,,,,", "needs an external_id or an email"),
    ("c-3,c3@example.com,too,few", "expected 13 fields, found 4"),
    ("c-3," + "x" * 250 + "@example.com,,,,,,,,,,,", "email: at most 254 characters"),
]


@pytest.mark.parametrize(("row", "reason"), BAD_ROWS)
def test_a_bad_row_is_reported_with_its_line_and_good_rows_are_imported(tmp_path, db, row, reason):
    summary = import_file(leads_csv(tmp_path, GOOD[0], row, GOOD[1]), "leads")
    assert summary.status == "done"
    assert (summary.created, summary.rejected) == (2, 1)
    assert summary.errors[0]["line"] == 3
    assert any(reason in r for r in summary.errors[0]["reasons"]), summary.errors
    assert Lead.objects.count() == 2


def test_an_unknown_owner_is_rejected_and_a_known_one_assigned(tmp_path, role_users):
    path = write(
        tmp_path,
        "email,owner\na@example.com,sales1\nb@example.com,ghost\n",
    )
    summary = import_file(path, "leads")
    assert summary.errors == [{"line": 3, "reasons": ["owner: no user 'ghost'"]}]
    assert Lead.objects.get(email="a@example.com").owner == role_users["sales1"]


def test_line_numbers_count_physical_lines_of_multiline_cells(tmp_path, db):
    path = write(
        tmp_path,
        'email,note\na@example.com,"two\nlines"\nbad-email,x\n',
    )
    summary = import_file(path, "leads")
    assert summary.errors[0]["line"] == 4
    assert Lead.objects.get().attributes == {"note": "two\nlines"}


def test_an_atomic_import_with_a_bad_row_writes_nothing(tmp_path, db):
    summary = import_file(
        leads_csv(tmp_path, GOOD[0], BAD_ROWS[0][0], GOOD[1]), "leads", atomic=True
    )
    assert summary.status == "rolled_back"
    assert (summary.created, summary.rejected) == (0, 1)
    assert summary.errors[0]["line"] == 3
    assert Lead.objects.count() == 0
    assert Identity.objects.count() == 0


def test_an_atomic_import_of_good_rows_is_written(tmp_path, db):
    summary = import_file(leads_csv(tmp_path, *GOOD), "leads", atomic=True)
    assert (summary.status, summary.created) == ("done", 2)


def test_importing_the_same_file_twice_changes_nothing_the_second_time(tmp_path, db):
    path = leads_csv(tmp_path, *GOOD)
    import_file(path, "leads")
    before = {lead.pk: (lead.updated_at, lead.attributes) for lead in Lead.objects.all()}
    summary = import_file(path, "leads")
    assert (summary.created, summary.updated, summary.unchanged) == (0, 0, 2)
    after = {lead.pk: (lead.updated_at, lead.attributes) for lead in Lead.objects.all()}
    assert after == before
    assert Identity.objects.count() == 2


def test_a_changed_row_updates_its_lead_and_keeps_what_the_file_does_not_say(tmp_path, db):
    import_file(leads_csv(tmp_path, *GOOD), "leads")
    changed = GOOD[0].replace("Acme", "Acme GmbH").replace(",12,", ",,")
    summary = import_file(leads_csv(tmp_path, changed, GOOD[1]), "leads")
    assert (summary.updated, summary.unchanged) == (1, 1)
    ann = Lead.objects.get(email="ann@example.com")
    assert ann.company == "Acme GmbH"
    # An empty cell does not erase the stored seats.
    assert ann.attributes["seats"] == 12


def test_a_row_matching_an_existing_lead_by_email_adds_the_identity(tmp_path, db):
    lead = LeadFactory(email="ann@example.com")
    summary = import_file(leads_csv(tmp_path, GOOD[0]), "leads", source="crm")
    assert summary.updated == 1
    assert Identity.objects.get(source="crm", external_id="c-1").lead == lead


# ---- file-level failures: nothing written ------------------------------------------------


def assert_failed(summary, text):
    assert summary.status == "failed"
    assert text in summary.error
    assert Lead.objects.count() == 0


def test_a_missing_file_fails_before_writing(tmp_path, db):
    assert_failed(import_file(tmp_path / "nope.csv", "leads"), "cannot read")


def test_a_directory_fails_before_writing(tmp_path, db):
    assert_failed(import_file(tmp_path, "leads"), "cannot read")


def test_a_latin1_file_fails_before_writing_and_names_the_line(tmp_path, db):
    path = leads_csv(tmp_path, *GOOD)
    with path.open("ab") as handle:
        handle.write("c-9,z@example.com,Zoë,,,,,,,,,,\n".encode("latin-1"))
    summary = import_file(path, "leads")
    assert_failed(summary, "not valid UTF-8 (line 4")


def test_a_utf16_file_fails_before_writing(tmp_path, db):
    path = write(tmp_path, "\n".join([HEADER, *GOOD]), encoding="utf-16")
    assert_failed(import_file(path, "leads"), "UTF-16")


def test_a_binary_file_fails_before_writing(tmp_path, db):
    path = tmp_path / "leads.csv"
    path.write_bytes(b"email\n\x00\x01\x02a@example.com\n")
    assert_failed(import_file(path, "leads"), "not a text file")


def test_an_empty_file_fails(tmp_path, db):
    assert_failed(import_file(write(tmp_path, ""), "leads"), "empty")


def test_a_missing_required_column_fails_before_writing(tmp_path, db):
    path = write(tmp_path, "first_name,company\nAnn,Acme\n")
    assert_failed(import_file(path, "leads"), "missing required column(s): external_id or email")


def test_a_duplicated_column_fails_before_writing(tmp_path, db):
    path = write(tmp_path, "email,email\na@example.com,b@example.com\n")
    assert_failed(import_file(path, "leads"), "duplicate columns")


def test_a_utf8_bom_is_accepted(tmp_path, db):
    path = write(tmp_path, "\ufeff" + "\n".join([HEADER, *GOOD]) + "\n")
    assert import_file(path, "leads").created == 2


# ---- JSONL ---------------------------------------------------------------------------------


def test_jsonl_leads_keep_json_types_and_report_bad_lines(tmp_path, db):
    lines = [
        json.dumps(
            {
                "external_id": "j-1",
                "email": "j1@example.com",
                "employees": 40,
                "beta": True,
                "tags": ["a"],
            }
        ),
        "",
        "{not json",
        json.dumps([1, 2]),
        json.dumps({"email": "j2@example.com", "seats": "7", "attributes": {"tier": "gold"}}),
    ]
    summary = import_file(write(tmp_path, "\n".join(lines), "leads.jsonl"), "leads")
    assert (summary.created, summary.rejected) == (2, 2)
    assert [e["line"] for e in summary.errors] == [3, 4]
    j1 = Lead.objects.get(email="j1@example.com")
    assert j1.employees == 40
    assert j1.attributes == {"beta": True, "tags": ["a"]}
    assert Lead.objects.get(email="j2@example.com").attributes == {"seats": 7, "tier": "gold"}


# ---- events --------------------------------------------------------------------------------

EVENTS_HEADER = "external_id,email,lead_external_id,event_type,occurred_at,properties,campaign"


def test_events_import_with_lines_duplicates_and_identities(tmp_path, db):
    identity = IdentityFactory(source="web", external_id="visitor-1")
    rows = [
        EVENTS_HEADER,
        'ev-1,a@example.com,,page_view,2025-01-02T10:00:00Z,"{""path"": ""/pricing""}",spring',
        "ev-2,,visitor-1,demo_request,2025-01-03T10:00:00Z,,",
        "ev-3,,unknown-visitor,page_view,2025-01-03T10:00:00Z,,",
        "ev-4,a@example.com,,page_view,not-a-date,,",
        'ev-5,a@example.com,,page_view,2025-01-03T10:00:00Z,"[1]",',
        "ev-6,a@example.com,,,2025-01-03T10:00:00Z,,",
    ]
    path = write(tmp_path, "\n".join(rows) + "\n", "events.csv")
    summary = import_file(path, "events", source="web")
    assert (summary.created, summary.rejected) == (2, 4)
    assert [e["line"] for e in summary.errors] == [4, 5, 6, 7]
    assert "web:unknown-visitor" in summary.errors[0]["reasons"][0]
    first = Event.objects.get(external_id="ev-1")
    assert first.properties == {"path": "/pricing", "campaign": "spring"}
    assert first.source == "web"
    assert Event.objects.get(external_id="ev-2").lead == identity.lead
    again = import_file(path, "events", source="web")
    assert (again.created, again.unchanged, again.rejected) == (0, 2, 4)
    assert Event.objects.count() == 2


def test_an_events_file_without_occurred_at_fails_before_writing(tmp_path, db):
    path = write(tmp_path, "external_id,email,event_type\ne1,a@example.com,view\n", "e.csv")
    summary = import_file(path, "events")
    assert summary.status == "failed"
    assert "occurred_at" in summary.error
    assert Event.objects.count() == 0


def test_an_atomic_events_import_with_a_bad_row_stores_nothing(tmp_path, db):
    rows = [
        EVENTS_HEADER,
        "ev-1,a@example.com,,view,2025-01-02T10:00:00Z,,",
        "ev-2,a@example.com,,view,nope,,",
    ]
    summary = import_file(write(tmp_path, "\n".join(rows), "e.csv"), "events", atomic=True)
    assert summary.status == "rolled_back"
    assert Event.objects.count() == 0
    assert Lead.objects.count() == 0


# ---- mappings ------------------------------------------------------------------------------


def test_the_shipped_x_education_mapping_imports_a_leads_csv_shaped_file(db):
    summary = import_file(FIXTURES / "x_education_sample.csv", "leads", mapping="x_education_leads")
    assert (summary.status, summary.created, summary.rejected) == ("done", 30, 0)
    assert Identity.objects.filter(source="x_education").count() == 30
    customers = Lead.objects.filter(lifecycle_stage="customer")
    assert customers.count() == 10
    # The file has no dates: converted leads are customers with an unknown conversion time.
    assert not customers.filter(converted_at__isnull=False).exists()
    sources = set(Lead.objects.values_list("source", flat=True))
    assert "google" not in sources and "Google" in sources
    for lead in Lead.objects.all():
        attrs = lead.attributes
        # Leakage columns are dropped, the label is not an attribute.
        assert not {"Tags", "tags", "Lead Quality", "lead_quality", "Converted"} & set(attrs)
        assert not any(key.lower().startswith("asymmetrique") for key in attrs)
        assert "Select" not in attrs.values()
        assert isinstance(attrs["lead_number"], int)
        assert isinstance(attrs["do_not_email"], bool)
        assert "last_activity" in attrs  # doubtful, but kept
    no_visits = Lead.objects.filter(attributes__lead_number=700004).get()
    assert "total_visits" not in no_visits.attributes


def test_the_x_education_import_is_idempotent(db):
    path = FIXTURES / "x_education_sample.csv"
    import_file(path, "leads", mapping="x_education_leads")
    again = import_file(path, "leads", mapping="x_education_leads")
    assert (again.created, again.updated, again.unchanged) == (0, 0, 30)


def test_the_shipped_mapping_names_label_leakage_and_doubtful_columns():
    mapping = load_mapping("x_education_leads")
    assert mapping.label["column"] == "Converted"
    assert set(mapping.leakage) == {
        "Tags",
        "Lead Quality",
        "Lead Profile",
        "Asymmetrique Activity Index",
        "Asymmetrique Profile Index",
        "Asymmetrique Activity Score",
        "Asymmetrique Profile Score",
    }
    assert set(mapping.leakage) <= mapping.drop
    assert set(mapping.doubtful) == {"Last Activity", "Last Notable Activity"}
    assert mapping.columns["Prospect ID"] == "external_id"


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"colums": {}}, "unknown keys in the mapping: colums"),
        ({"leakage": ["Tags"]}, "leakage columns must be dropped: Tags"),
        ({"columns": {"a": 1}}, "'columns' must map"),
        ({"label": {"column": "C", "sets": {"lifecycle_stage": "won"}}}, "unknown lifecycle"),
        ({"drop": "Tags"}, "'drop' must be a list"),
    ],
)
def test_an_invalid_mapping_is_refused_with_a_reason(document, message):
    with pytest.raises(ImportFailed, match=message):
        load_mapping(document)


def test_a_mapping_that_is_not_json_fails_the_import_before_writing(tmp_path, db):
    bad = write(tmp_path, "{nope", "mapping.json")
    summary = import_file(leads_csv(tmp_path, *GOOD), "leads", mapping=bad)
    assert_failed(summary, "not valid JSON")


def test_a_label_value_outside_the_mapping_is_rejected(tmp_path, db):
    path = write(tmp_path, "Prospect ID,Converted\np-1,1\np-2,maybe\n")
    summary = import_file(path, "leads", mapping="x_education_leads")
    assert summary.errors == [
        {"line": 3, "reasons": ["Converted: 'maybe' is not a known label value"]}
    ]


# ---- commands ------------------------------------------------------------------------------


def test_import_leads_prints_one_json_line(tmp_path, db):
    out = StringIO()
    call_command("import_leads", str(leads_csv(tmp_path, *GOOD)), "--source", "crm", stdout=out)
    lines = out.getvalue().strip().splitlines()
    assert len(lines) == 1
    assert json.loads(lines[0])["created"] == 2


def test_import_leads_fails_with_the_summary_when_atomic_rows_are_rejected(tmp_path, db):
    out = StringIO()
    with pytest.raises(CommandError):
        call_command(
            "import_leads",
            str(leads_csv(tmp_path, GOOD[0], BAD_ROWS[0][0])),
            "--atomic",
            stdout=out,
        )
    summary = json.loads(out.getvalue())
    assert summary["status"] == "rolled_back"
    assert summary["errors"][0]["line"] == 3


def test_import_events_accepts_a_source(tmp_path, db):
    rows = [EVENTS_HEADER, "ev-1,a@example.com,,view,2025-01-02T10:00:00Z,,"]
    out = StringIO()
    call_command(
        "import_events",
        str(write(tmp_path, "\n".join(rows), "e.csv")),
        "--source",
        "webinar",
        stdout=out,
    )
    assert json.loads(out.getvalue())["created"] == 1
    assert Event.objects.get().source == "webinar"
