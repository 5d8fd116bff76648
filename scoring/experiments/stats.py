"""The statistics of an experiment, pure NumPy: per-arm rates with Wilson intervals (the one
`wilson_interval`, from `scoring.kpis.stats`), and the difference of the primary metric's rate
(challenger minus champion) with an *always-valid* confidence sequence, so looking at the
report every day does not inflate the false-positive rate.

The confidence sequence is the mixture sequential probability ratio test (mSPRT) of Johari,
Pekelis and Walsh ("Always valid inference", 2017) with a normal mixture over the difference,
on the normal approximation of the two rates: with the estimate d, its variance V (the sum of
the two arms' binomial variances) and the mixture's variance tau^2, the likelihood ratio of the
data under "the difference is theta" mixed over the alternatives is

    L(theta) = sqrt(V / (V + tau^2)) * exp(tau^2 (d - theta)^2 / (2 V (V + tau^2)))

and the set of theta where L(theta) < 1/alpha is the interval d +- h with

    h^2 = V (V + tau^2) / tau^2 * (2 ln(1/alpha) + ln((V + tau^2) / V)).

Under the null, L is a martingale, so by Ville's inequality the chance that it *ever* reaches
1/alpha (at any of however many looks) is at most alpha: the interval covers the true
difference at every look at once with probability 1 - alpha. tau is set to the relevant
difference, which makes the test most sensitive to differences of that size. The variance
uses each arm's rate smoothed by half a success (x + 0.5) / (n + 1), so an arm with no
conversions yet does not claim a zero variance; decisions also wait for the minimum sample,
below which the normal approximation is not trusted."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from scoring.kpis.stats import quantiles, rate, wilson_interval

CONTINUE = "continue"
CHALLENGER_BETTER = "challenger_better"
CHAMPION_BETTER = "champion_better"
NO_DIFFERENCE = "no_difference"
DECISIONS = (CONTINUE, CHALLENGER_BETTER, CHAMPION_BETTER, NO_DIFFERENCE)


@dataclass(frozen=True)
class ArmRate:
    """One arm's primary metric: `successes` of `n`, the rate and its 95 % Wilson interval."""

    n: int
    successes: int
    rate: float | None
    ci: tuple[float | None, float | None]


def arm_rate(successes: int, n: int) -> ArmRate:
    return ArmRate(n, successes, rate(successes, n), wilson_interval(successes, n))


def difference_sequence(
    x_champion: np.ndarray | float,
    n_champion: np.ndarray | float,
    x_challenger: np.ndarray | float,
    n_challenger: np.ndarray | float,
    *,
    alpha: float,
    tau: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The difference of rates (challenger - champion) and its always-valid interval (lo, hi),
    element-wise over arrays of counts (one element per look); NaN where an arm has no leads."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1); got {alpha}")
    if tau <= 0:
        raise ValueError(f"tau must be positive; got {tau}")
    xa, na, xb, nb = (
        np.asarray(v, dtype=np.float64)
        for v in (x_champion, n_champion, x_challenger, n_challenger)
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        estimate = xb / nb - xa / na
        pa = (xa + 0.5) / (na + 1.0)
        pb = (xb + 0.5) / (nb + 1.0)
        variance = pa * (1 - pa) / na + pb * (1 - pb) / nb
        tau2 = tau * tau
        half = np.sqrt(
            variance
            * (variance + tau2)
            / tau2
            * (2 * math.log(1 / alpha) + np.log((variance + tau2) / variance))
        )
    empty = (na <= 0) | (nb <= 0)
    estimate = np.where(empty, np.nan, estimate)
    half = np.where(empty, np.nan, half)
    # A difference of two rates lies in [-1, 1]: cutting the interval there loses no coverage.
    return estimate, np.maximum(estimate - half, -1.0), np.minimum(estimate + half, 1.0)


def decide(
    n_champion: int,
    n_challenger: int,
    lo: float,
    hi: float,
    *,
    min_sample: int,
    relevant_difference: float,
    higher_is_better: bool = True,
) -> str:
    """`continue` until both arms reach the minimum sample; then the arm whose rate the
    interval shows better (for a metric where lower is better, e.g. the bad-lead rate, the
    lower one), or `no_difference` when the interval lies within +- the relevant difference,
    or `continue` while it straddles zero and reaches beyond a relevant difference."""
    if n_champion < min_sample or n_challenger < min_sample or math.isnan(lo):
        return CONTINUE
    if lo > 0:
        return CHALLENGER_BETTER if higher_is_better else CHAMPION_BETTER
    if hi < 0:
        return CHAMPION_BETTER if higher_is_better else CHALLENGER_BETTER
    if -relevant_difference < lo and hi < relevant_difference:
        return NO_DIFFERENCE
    return CONTINUE


def median_days(values: np.ndarray | list[float]) -> float | None:
    """The median of durations in days (None for none), as the KPIs compute it."""
    return quantiles(values)["median"]
