"""The statistics, against scikit-learn and obviously-correct references (no database)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scoring.kpis import stats


@pytest.mark.parametrize(
    ("k", "n", "low", "high"),
    [
        (0, 10, 0.0, 0.277533),
        (10, 10, 0.722467, 1.0),
        (1, 5, 0.036224, 0.624465),
        (50, 100, 0.403832, 0.596168),
    ],
)
def test_wilson_interval_matches_hand_computed_values(k, n, low, high):
    got_low, got_high = stats.wilson_interval(k, n)
    assert got_low == pytest.approx(low, abs=1e-6)
    assert got_high == pytest.approx(high, abs=1e-6)


def test_wilson_interval_is_undefined_for_no_leads_and_refuses_impossible_counts():
    assert stats.wilson_interval(0, 0) == (None, None)
    with pytest.raises(ValueError, match="within"):
        stats.wilson_interval(3, 2)


def test_quantiles_interpolate_like_percentile_cont():
    assert stats.quantiles([1, 2, 3, 4]) == {
        "min": 1.0,
        "q1": 1.75,
        "median": 2.5,
        "q3": 3.25,
        "max": 4.0,
    }
    assert stats.quantiles([])["median"] is None


scores_and_labels = st.lists(
    st.tuples(st.integers(0, 20), st.booleans()), min_size=2, max_size=80
).filter(lambda rows: 0 < sum(label for _, label in rows) < len(rows))


@settings(max_examples=40, deadline=None)
@given(scores_and_labels)
def test_deciles_cover_every_lead_and_conversion_once(rows):
    histogram = stats.ScoreHistogram.from_cells([(s, 1, label) for s, label in rows])
    table = stats.decile_table(histogram)
    assert sum(r["leads"] for r in table) == len(rows)
    assert sum(r["converted"] for r in table) == pytest.approx(histogram.total_positives)
    assert table[-1]["cumulative_gain"] == pytest.approx(1.0)
    # Deciles run from the highest scores down.
    assert [r["max_score"] for r in table] == sorted((r["max_score"] for r in table), reverse=True)


def test_deciles_without_ties_match_a_plain_sort():
    # 20 leads, scores 1..20; the top 4 converted.
    cells = [(s, 1, 1 if s > 16 else 0) for s in range(1, 21)]
    table = stats.decile_table(stats.ScoreHistogram.from_cells(cells))
    assert [r["leads"] for r in table] == [2] * 10
    assert [r["converted"] for r in table[:3]] == [2, 2, 0]
    assert table[0]["lift"] == pytest.approx(1.0 / 0.2)
    assert table[1]["cumulative_gain"] == pytest.approx(1.0)


def test_a_tie_across_a_decile_boundary_shares_its_conversions_in_proportion():
    # 10 leads all scoring 50, 5 converted: every decile expects half a conversion.
    table = stats.decile_table(stats.ScoreHistogram.from_cells([(50, 10, 5)]))
    assert [r["converted"] for r in table] == [0.5] * 10
    assert all(r["lift"] == pytest.approx(1.0) for r in table)


def test_threshold_curve_counts_unscored_converters_as_missed():
    histogram = stats.ScoreHistogram.from_cells([(90, 4, 3), (40, 6, 1)])
    curve = stats.threshold_curve(histogram, [50, 0], total_positives=5)
    assert curve[0] == {
        "threshold": 50.0,
        "mqls": 4,
        "converted": 3,
        "precision": 0.75,
        "recall": 0.6,
    }
    assert curve[1]["mqls"] == 10 and curve[1]["recall"] == pytest.approx(0.8)
