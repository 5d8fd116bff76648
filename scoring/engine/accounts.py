"""Account roll-up: contact scores -> an account score and band (the rule set's `account`).

- `max`: the highest contact score; `sum`: their sum; `top_k_mean`: the mean of the `k`
  highest (of all of them when there are fewer than k).
- Then rounded half away from zero, limited to at most `cap` when a cap is given, and banded
  by the band rule of DESIGN.md §4 over the roll-up's own bands.

Only scored contacts count; an account without any has no score (None)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .compiler import band_of, band_table
from .scorer import round_half_away_from_zero
from .spec import AccountRollup


@dataclass(frozen=True, eq=False)
class AccountScores:
    """Per account (0..m-1): `scores` float (NaN = no scored contact), `bands` object."""

    scores: np.ndarray
    bands: np.ndarray


def roll_up_accounts(
    rollup: AccountRollup, account_index: np.ndarray, scores: np.ndarray, m: int
) -> AccountScores:
    """Roll the contacts' `scores` (one per contact, NaN = unscored) up into their accounts
    (`account_index`, 0..m-1 per contact). Vectorised: one sort, no loop over accounts."""
    account_index = np.asarray(account_index, dtype=np.intp)
    scores = np.asarray(scores, dtype=np.float64)
    scored = ~np.isnan(scores)
    account_index, scores = account_index[scored], scores[scored]
    counts = np.bincount(account_index, minlength=m)
    total = np.full(m, np.nan)
    if rollup.method == "sum":
        total = np.where(
            counts > 0, np.bincount(account_index, weights=scores, minlength=m), np.nan
        )
    elif rollup.method == "max":
        best = np.full(m, -np.inf)
        np.maximum.at(best, account_index, scores)
        total = np.where(counts > 0, best, np.nan)
    else:
        # Contacts by account, highest score first; each contact's rank within its account.
        order = np.lexsort((-scores, account_index))
        sorted_accounts = account_index[order]
        starts = np.searchsorted(sorted_accounts, np.arange(m))
        rank = np.arange(order.shape[0]) - starts[sorted_accounts]
        top = rank < rollup.k
        sums = np.bincount(sorted_accounts[top], weights=scores[order][top], minlength=m)
        taken = np.minimum(counts, rollup.k)
        total = np.where(taken > 0, sums / np.maximum(taken, 1), np.nan)
    known = ~np.isnan(total)
    rounded = np.full(m, np.nan)
    rounded[known] = round_half_away_from_zero(total[known])
    if rollup.cap is not None:
        rounded[known] = np.minimum(rounded[known], rollup.cap)
    bands = np.full(m, None, dtype=object)
    if rollup.bands:
        bands[known] = band_of(band_table(rollup.bands), rounded[known])
    return AccountScores(rounded, bands)
