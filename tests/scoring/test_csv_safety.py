"""The one CSV cell escaper, and the one CSV writer that applies it to every cell."""

from __future__ import annotations

import csv
import datetime as dt
import io
from decimal import Decimal

import pytest

from scoring.csv_safety import csv_lines, safe_cell, safe_row


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('=HYPERLINK("http://x")', '\'=HYPERLINK("http://x")'),
        ("+1 555", "'+1 555"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ("Acme", "Acme"),
        ("a=b", "a=b"),
        ("", ""),
        (None, ""),
        (-5, -5),
        (-0.25, -0.25),
        (Decimal("-1.5"), Decimal("-1.5")),
        (True, "true"),
        (False, "false"),
        (dt.date(2024, 1, 31), "2024-01-31"),
        (dt.datetime(2024, 1, 31, 8, 0, tzinfo=dt.UTC), "2024-01-31T08:00:00+00:00"),
    ],
)
def test_cells_that_a_spreadsheet_would_run_get_a_leading_quote_and_data_stays_data(
    value, expected
):
    assert safe_cell(value) == expected


def test_safe_row_escapes_every_cell():
    assert safe_row(["=1", "ok", 3]) == ["'=1", "ok", 3]


def test_csv_lines_escape_every_cell_and_round_trip_through_a_reader():
    lines = list(csv_lines([["name", "n"], ["=cmd|' /C calc'!A0", -3], ['a "quoted", cell', None]]))
    assert len(lines) == 3
    rows = list(csv.reader(io.StringIO("".join(lines))))
    assert rows == [["name", "n"], ["'=cmd|' /C calc'!A0", "-3"], ['a "quoted", cell', ""]]


def test_export_scores_writes_every_lead_by_score_with_cells_escaped(db, tmp_path):
    from django.core.management import call_command

    from tests.factories import IdentityFactory, LeadFactory

    top = LeadFactory(email="top@acme.test", score=90, band="=HYPERLINK(1)", persona="@x")
    IdentityFactory(lead=top, source="hubspot", external_id="-1+cmd")
    LeadFactory(email="unscored@acme.test", score=None)
    LeadFactory(email="low@acme.test", score=-5, band="Cold", breakdown=[{"points": -5}])
    path = tmp_path / "scores.csv"
    call_command("export_scores", str(path), stdout=io.StringIO())
    rows = list(csv.DictReader(path.open(newline="", encoding="utf-8")))
    assert [row["email"] for row in rows] == [
        "top@acme.test",
        "low@acme.test",
        "unscored@acme.test",
    ]
    assert (rows[0]["band"], rows[0]["persona"], rows[0]["external_id"]) == (
        "'=HYPERLINK(1)",
        "'@x",
        "'-1+cmd",
    )
    # A negative score is a number, not a formula; the breakdown is JSON.
    assert rows[1]["score"] == "-5"
    assert rows[1]["breakdown"] == '[{"points":-5}]'
    assert rows[2]["score"] == ""
