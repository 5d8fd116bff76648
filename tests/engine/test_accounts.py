"""Account roll-up against a plain-Python reading of the rule: max, sum, top-k mean; rounding
half away from zero, the cap, the bands; unscored contacts and empty accounts."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from scoring.engine import AccountRollup, business_domain, roll_up_accounts
from scoring.engine.spec import GroupBand

from .naive_reference import round_half_away

BANDS = (GroupBand("Tier 1", 60), GroupBand("Tier 2", 20), GroupBand("Tier 3", -5))


def naive(rollup: AccountRollup, accounts: list[int], scores: list[float], m: int):
    out = []
    for a in range(m):
        mine = sorted((s for i, s in zip(accounts, scores, strict=True) if i == a and not
                       math.isnan(s)), reverse=True)  # fmt: skip
        if not mine:
            out.append((None, None))
            continue
        if rollup.method == "max":
            value = mine[0]
        elif rollup.method == "sum":
            value = sum(mine)
        else:
            top = mine[: rollup.k]
            value = sum(top) / len(top)
        value = round_half_away(value)
        if rollup.cap is not None:
            value = min(value, rollup.cap)
        reached = [b for b in rollup.bands if b.min_score <= value]
        band = max(reached, key=lambda b: b.min_score).name if reached else None
        out.append((value, band))
    return out


@settings(max_examples=200, deadline=None)
@given(
    method=st.sampled_from(["max", "sum", "top_k_mean"]),
    k=st.integers(1, 4),
    cap=st.sampled_from([None, 50, 100]),
    m=st.integers(1, 5),
    data=st.data(),
)
def test_it_matches_the_plain_reading(method, k, cap, m, data):
    n = data.draw(st.integers(0, 15))
    accounts = data.draw(st.lists(st.integers(0, m - 1), min_size=n, max_size=n))
    pool = [math.nan, -10, 0, 1, 2, 5, 25, 33, 50, 80, 100]
    scores = data.draw(st.lists(st.sampled_from(pool), min_size=n, max_size=n))
    rollup = AccountRollup(method=method, k=k, cap=cap, bands=BANDS)
    got = roll_up_accounts(rollup, np.array(accounts, dtype=np.intp), np.array(scores), m)
    expected = naive(rollup, accounts, scores, m)
    for a, (value, band) in enumerate(expected):
        if value is None:
            assert math.isnan(got.scores[a]) and got.bands[a] is None
        else:
            assert got.scores[a] == value and got.bands[a] == band


def test_top_k_mean_rounds_half_away_from_zero():
    rollup = AccountRollup(method="top_k_mean", k=2)
    got = roll_up_accounts(rollup, np.array([0, 0, 0]), np.array([10.0, 5.0, 1.0]), 1)
    assert got.scores.tolist() == [8.0]  # (10 + 5) / 2 = 7.5 -> 8


def test_only_business_domains_form_accounts():
    assert business_domain(" Ada@ACME.com. ") == "acme.com"
    assert business_domain("ada@gmail.com") is None
    assert business_domain("no-at-sign") is None
    assert business_domain(None) is None
