"""The arm assignment: a pure function of (salt, lead id), splitting as asked."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from scoring.experiments.assignment import arm_of, assignment_unit, challenger_mask


@given(salt=st.text(min_size=1, max_size=20), lead_id=st.integers(1, 10**12))
def test_a_lead_always_gets_the_same_arm(salt, lead_id):
    assert assignment_unit(salt, lead_id) == assignment_unit(salt, lead_id)
    assert 0 <= assignment_unit(salt, lead_id) < 1
    mask = challenger_mask(salt, np.array([lead_id]), 0.5)
    assert bool(mask[0]) == (arm_of(salt, lead_id, 0.5) == "challenger")


@pytest.mark.parametrize("split", [0.1, 0.5, 0.8])
def test_the_challengers_share_matches_the_split(split):
    ids = np.arange(1, 20001)
    share = challenger_mask("salt-a", ids, split).mean()
    # 20,000 leads: the binomial standard error is at most 0.0035.
    assert abs(share - split) < 0.015


def test_two_experiments_assign_independently():
    ids = np.arange(1, 20001)
    a = challenger_mask("salt-a", ids, 0.5)
    b = challenger_mask("salt-b", ids, 0.5)
    assert abs((a & b).mean() - 0.25) < 0.015


def test_consecutive_ids_are_not_assigned_in_blocks():
    mask = challenger_mask("salt", np.arange(1, 1001), 0.5)
    switches = np.count_nonzero(mask[1:] != mask[:-1])
    assert 400 < switches < 600


def test_a_split_outside_the_open_unit_interval_is_refused():
    with pytest.raises(ValueError):
        challenger_mask("salt", np.arange(3), 1.0)
