"""The bands endpoint against an independent computation on a known data set."""

from __future__ import annotations

import pytest

from tests.kpis import dataset

CONTRACT_KEYS = {
    "band",
    "leads",
    "converted",
    "conversion_rate",
    "ci_low",
    "ci_high",
    "revenue",
    "median_cycle_days",
}


@pytest.fixture
def specs(db):
    return dataset.build()


def get_bands(client, **params):
    response = client.get("/api/v1/kpis/bands/", params)
    assert response.status_code == 200, response.content
    return response.json()


def assert_rows_match(actual: list[dict], expected: list[dict]) -> None:
    assert [row["band"] for row in actual] == [row["band"] for row in expected]
    for got, want in zip(actual, expected, strict=True):
        assert set(got) == CONTRACT_KEYS
        for key in CONTRACT_KEYS:
            if isinstance(want[key], float):
                assert got[key] == pytest.approx(want[key], rel=1e-9, abs=1e-6), (want["band"], key)
            else:
                assert got[key] == want[key], (want["band"], key)


def test_every_number_matches_an_independent_computation(specs, client_as):
    start, end = dataset.PERIOD
    rows = get_bands(client_as("manager"), start=start, end=end)
    assert_rows_match(rows, dataset.expected_bands(specs, start, end))


def test_the_known_data_set_gives_the_hand_counted_bands(specs, client_as):
    start, end = dataset.PERIOD
    rows = {row["band"]: row for row in get_bands(client_as("manager"), start=start, end=end)}
    # Counted by hand from dataset.SPECS: Cold = trap, cold-1..3, last; Warm = edge, first;
    # MQL = drifted, tie; Hot = late-hot, hot-1, hot-2, hot-open, conv-later (Hot on Feb 5,
    # before its Feb 10 conversion); unscored = unscored-conv, scored-after.
    assert {b: (r["leads"], r["converted"]) for b, r in rows.items()} == {
        "Cold": (5, 1),
        "Warm": (2, 1),
        "MQL": (2, 0),
        "Hot": (5, 3),
        "Unscored": (2, 2),
    }
    # Wilson 95 % intervals, computed by hand (z = 1.96): 1 of 5, 1 of 2, 3 of 5, 0 of 2.
    assert rows["Cold"]["conversion_rate"] == pytest.approx(0.2)
    assert rows["Cold"]["ci_low"] == pytest.approx(0.036224, abs=1e-5)
    assert rows["Cold"]["ci_high"] == pytest.approx(0.624465, abs=1e-5)
    assert rows["Warm"]["ci_low"] == pytest.approx(0.094531, abs=1e-5)
    assert rows["Warm"]["ci_high"] == pytest.approx(0.905469, abs=1e-5)
    assert rows["Hot"]["ci_low"] == pytest.approx(0.230724, abs=1e-5)
    assert rows["Hot"]["ci_high"] == pytest.approx(0.882379, abs=1e-5)
    assert rows["MQL"]["ci_low"] == 0.0
    assert rows["MQL"]["ci_high"] == pytest.approx(0.657620, abs=1e-5)
    # Revenue won only: cold-1's 999 is pipeline, not won.
    assert rows["Cold"]["revenue"] == 1000
    assert rows["Warm"]["revenue"] == 500
    assert rows["Hot"]["revenue"] == 6500.5
    assert rows["Unscored"]["revenue"] == 250
    # Hot cycles: 3.75 days (hot-2), 10 (hot-1), 21 (conv-later) -> median 10.
    assert rows["Hot"]["median_cycle_days"] == pytest.approx(10.0)
    assert rows["Cold"]["median_cycle_days"] == pytest.approx(8.0)
    assert rows["Warm"]["median_cycle_days"] == pytest.approx(12.1666667)


def test_a_lead_that_converted_while_cold_and_became_hot_counts_as_cold(specs, client_as):
    rows = get_bands(client_as("manager"), start="2024-01-02", end="2024-01-02")
    assert [(r["band"], r["leads"], r["converted"]) for r in rows if r["leads"]] == [("Cold", 1, 1)]


def test_a_score_row_stamped_at_the_conversion_itself_is_not_before_it(specs, client_as):
    rows = get_bands(client_as("manager"), start="2024-01-03", end="2024-01-03")
    assert [(r["band"], r["converted"]) for r in rows if r["leads"]] == [("Warm", 1)]


def test_bands_come_in_band_order_with_empty_bands_and_no_unscored_row_without_unscored_leads(
    specs, client_as
):
    rows = get_bands(client_as("manager"), start="2024-01-10", end="2024-01-13")
    assert [r["band"] for r in rows] == ["Cold", "Warm", "MQL", "Hot"]
    warm = rows[1]
    assert warm["leads"] == 0
    assert warm["conversion_rate"] is None and warm["ci_low"] is None
    assert warm["median_cycle_days"] is None and warm["revenue"] == 0


@pytest.mark.parametrize("where", [{"persona": "Developer"}, {"source": "ads"}, {"source": "web"}])
def test_persona_and_source_filters_match_the_independent_computation(specs, client_as, where):
    start, end = dataset.PERIOD
    rows = get_bands(client_as("manager"), start=start, end=end, **where)
    assert_rows_match(rows, dataset.expected_bands(specs, start, end, **where))


def test_a_shorter_period_moves_the_end_of_period_band(specs, client_as):
    # late-hot was Warm until its Hot row on Jan 31; a period ending Jan 30 sees it Warm.
    start, end = dataset.PERIOD[0], dataset.PERIOD[1].replace(day=30)
    rows = get_bands(client_as("manager"), start=start, end=end)
    assert_rows_match(rows, dataset.expected_bands(specs, start, end))
