"""CSV export of every dashboard table, escaped against formula injection."""

from __future__ import annotations

import csv
import io

from scoring.kpis.report import TABLES
from scoring.models import ScoreHistory
from tests.kpis import dataset


def parse(response) -> list[dict]:
    assert response["Content-Type"].startswith("text/csv")
    return list(csv.DictReader(io.StringIO(response.content.decode())))


def test_every_table_exports_with_the_same_filters(client_as, db):
    dataset.build()
    client = client_as("manager")
    for name, (_, columns) in TABLES.items():
        response = client.get(
            f"/kpis/export/{name}.csv", {"start": "2024-01-01", "end": "2024-01-31"}
        )
        assert response.status_code == 200, name
        header = next(csv.reader(io.StringIO(response.content.decode())))
        assert tuple(header) == columns, name
    rows = parse(client.get("/kpis/export/bands.csv", {"start": "2024-01-01", "end": "2024-01-31"}))
    api = client.get("/api/v1/kpis/bands/", {"start": "2024-01-01", "end": "2024-01-31"}).json()
    assert [(r["band"], int(r["leads"])) for r in rows] == [(r["band"], r["leads"]) for r in api]


def test_a_band_name_that_looks_like_a_formula_is_escaped_in_the_export(client_as, db):
    specs = dataset.build()
    ScoreHistory.objects.create(
        lead_id=next(s.lead_id for s in specs if s.key == "unscored-conv"),
        as_of=dataset.at(19),
        score=1,
        band="=cmd|' /C calc'!A0",
    )
    rows = parse(client_as("manager").get("/kpis/export/bands.csv", {"start": "2024-01-01"}))
    assert "'=cmd|' /C calc'!A0" in [r["band"] for r in rows]


def test_an_unknown_table_is_404_and_bad_filters_400(client_as):
    client = client_as("manager")
    assert client.get("/kpis/export/nope.csv").status_code == 404
    response = client.get("/kpis/export/bands.csv", {"end": "31/01/2024"})
    assert response.status_code == 400
    assert b"not a date" in response.content
