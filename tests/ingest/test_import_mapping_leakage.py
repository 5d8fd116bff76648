"""A mapping's leakage lists travel with the import job whatever path the mapping file had,
and a re-import with a mapping that drops a column removes that attribute (both write paths)."""

import io
import json

import pytest
from django.core.management import call_command

from integrations import imports
from integrations.models import ImportJob
from scoring.ml.training import import_leakage_reasons
from scoring.models import Lead

CSV = (
    "email,Visits,Region,Call Duration,Converted\n"
    "a@x.com,3,north,12.5,1\n"
    "b@x.com,1,south,0,0\n"
    "c@x.com,4,east,30,1\n"
)


def _import(path, *args) -> dict:
    out = io.StringIO()
    call_command("import_leads", str(path), *args, stdout=out)
    return json.loads(out.getvalue())


@pytest.mark.parametrize("staged", [True, False])
def test_a_reimport_whose_mapping_drops_a_column_removes_the_attribute(
    db, tmp_path, monkeypatch, staged
):
    monkeypatch.setattr(imports, "STAGED_LEADS", staged)
    data = tmp_path / "leads.csv"
    data.write_text(CSV)
    _import(data)
    assert Lead.objects.get(email="a@x.com").attributes["Call Duration"] == 12.5
    mapping = tmp_path / "somewhere" / "clean.json"  # not under integrations/mappings/
    mapping.parent.mkdir()
    mapping.write_text(
        json.dumps(
            {"drop": ["Call Duration"], "leakage": ["Call Duration"], "doubtful": ["Region"]}
        )
    )
    summary = _import(data, "--mapping", str(mapping))
    assert summary["status"] == "done" and summary["updated"] == 3, summary
    for lead in Lead.objects.all():
        assert "Call Duration" not in lead.attributes
        assert "Visits" in lead.attributes and "Region" in lead.attributes


def test_the_mappings_lists_are_stored_with_the_job_and_reach_training(db, tmp_path):
    data = tmp_path / "leads.csv"
    data.write_text(CSV)
    mapping = tmp_path / "crm.json"
    mapping.write_text(
        json.dumps(
            {
                "columns": {"Call Duration": "call_minutes"},
                "drop": ["Call Duration"],
                "leakage": ["Call Duration"],
                "doubtful": ["Region"],
                "label": {
                    "column": "Converted",
                    "positive": ["1"],
                    "negative": ["0"],
                    "sets": {"lifecycle_stage": "customer"},
                },
            }
        )
    )
    _import(data, "--mapping", str(mapping))
    job = ImportJob.objects.get()
    assert job.status == "done" and job.created == 3
    assert job.feature_exclusions == {
        "leakage": ["Call Duration", "Converted", "call_minutes"],
        "doubtful": ["Region"],
    }
    reasons = import_leakage_reasons()
    assert set(reasons) == {"Call Duration", "Converted", "call_minutes", "Region"}
    assert f"of import #{job.pk} lists it as doubtful" in reasons["Region"]
    assert "Region" not in import_leakage_reasons(include_doubtful=True)


def test_a_failed_import_teaches_training_nothing(db, tmp_path):
    data = tmp_path / "leads.csv"
    data.write_text("Visits\n3\n")  # no id column
    mapping = tmp_path / "m.json"
    mapping.write_text(json.dumps({"doubtful": ["Visits"]}))
    with pytest.raises(Exception, match="missing required"):
        _import(data, "--mapping", str(mapping))
    assert ImportJob.objects.get().feature_exclusions == {}
    assert import_leakage_reasons() == {}
