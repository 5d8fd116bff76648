"""The importer reads what customers export: the delimiter is sniffed (comma, semicolon, tab)
or given, a file without an id column is imported with --id-column row, and every header
error quotes the header as parsed."""

import io
import json

import pytest
from django.core.management import call_command

from integrations import imports
from scoring.models import Identity, Lead

ROWS = [("a@x.com", "3", "1,5"), ("b@x.com", "1", "0,0"), ("c@x.com", "4", "2,25")]


def _write(path, delimiter: str, header=("email", "Visits", "Share")) -> None:
    lines = [delimiter.join(header)] + [delimiter.join(row) for row in ROWS]
    path.write_text("\n".join(lines) + "\n")


def _import(path, *args) -> dict:
    out = io.StringIO()
    try:
        call_command("import_leads", str(path), *args, stdout=out)
    except Exception as error:  # the command exits non-zero after printing its summary
        summary = json.loads(out.getvalue())
        summary["raised"] = str(error)
        return summary
    return json.loads(out.getvalue())


@pytest.mark.parametrize("delimiter", [";", "\t", ","])
def test_the_delimiter_is_sniffed(db, tmp_path, delimiter):
    path = tmp_path / "leads.csv"
    if delimiter == ",":
        lines = ["email,Visits,Share"] + [f'{e},{v},"{s}"' for e, v, s in ROWS]
        path.write_text("\n".join(lines) + "\n")
    else:
        _write(path, delimiter)
    summary = _import(path)
    assert summary["status"] == "done" and summary["created"] == 3, summary
    lead = Lead.objects.get(email="a@x.com")
    assert lead.attributes["Visits"] == 3 and lead.attributes["Share"] == "1,5"


def test_a_given_delimiter_wins_and_a_wrong_one_shows_the_header_as_parsed(db, tmp_path):
    path = tmp_path / "leads.csv"
    _write(path, ";")
    summary = _import(path, "--delimiter", ",")
    assert summary["status"] == "failed"
    assert "missing required column(s): external_id or email" in summary["error"]
    assert (
        'the header as parsed with the comma delimiter: ["email;Visits;Share"]'
        in (summary["error"])
    )
    assert _import(path, "--delimiter", ";")["created"] == 3
    tabbed = tmp_path / "tabbed.csv"
    _write(tabbed, "\t", header=("email", "Visits", "Share"))
    assert _import(tabbed, "--delimiter", "tab")["status"] == "done"
    assert "must be one character" in _import(path, "--delimiter", ";;")["error"]


def test_a_file_without_an_id_column_is_imported_with_numbered_rows(db, tmp_path):
    path = tmp_path / "shoppers.csv"
    path.write_text("PageValues;Month;Revenue\n0;Feb;0\n12,5;Mar;1\n0;Nov;0\n")
    failed = _import(path)
    assert "--id-column row" in failed["error"]
    assert '["PageValues", "Month", "Revenue"]' in failed["error"]
    summary = _import(path, "--id-column", "row", "--source", "shoppers")
    assert summary["created"] == 3, summary
    ids = dict(Identity.objects.filter(source="shoppers").values_list("external_id", "lead_id"))
    assert sorted(ids) == ["1", "2", "3"]
    assert Lead.objects.get(pk=ids["2"]).attributes["Month"] == "Mar"
    again = _import(path, "--id-column", "row", "--source", "shoppers")
    assert again["unchanged"] == 3 and Lead.objects.count() == 3


def test_id_column_names_a_column_and_duplicate_headers_show_the_header(db, tmp_path):
    path = tmp_path / "ids.csv"
    path.write_text("Prospect ID,Visits\np-1,3\np-2,4\n")
    assert _import(path, "--id-column", "Prospect ID", "--source", "crm")["created"] == 2
    assert Identity.objects.filter(source="crm", external_id="p-2").exists()
    assert "--id-column 'Nope' is not a column" in _import(path, "--id-column", "Nope")["error"]
    duplicated = tmp_path / "dup.csv"
    duplicated.write_text("email\tVisits\tVisits\na@x.com\t1\t2\n")
    error = _import(duplicated)["error"]
    assert "duplicate columns in the header: Visits" in error
    assert 'tab delimiter: ["email", "Visits", "Visits"]' in error


def test_sniffing_prefers_the_delimiter_that_splits_every_line_alike(tmp_path):
    path = tmp_path / "mixed.csv"
    # Commas inside the values, semicolons between them.
    path.write_text("name;note\nAcme;a, b, c\nBeta;d, e\n")
    assert imports.sniff_delimiter(path) == ";"
    path.write_text("single column\nvalue\n")
    assert imports.sniff_delimiter(path) == ","
