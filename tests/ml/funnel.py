"""A synthetic, time-drifted funnel as a customer might import it: leads created over two
historical years (2017-2018), tabular attributes whose distribution and effect drift with
time, and a planted leak (a call's duration, recorded only for leads that went on to buy).

`make_drifted_funnel` stores the leads and returns what a plain scikit-learn baseline needs:
the same attributes as a table, in the order the leads were created (= id order)."""

from __future__ import annotations

import datetime as dt

import numpy as np

from scoring.models import Lead

START = dt.datetime(2017, 1, 1, tzinfo=dt.UTC)
DAYS = 730
CHANNELS = ("web", "referral", "event", "ads")
REGIONS = ("north", "south", "east", "west")


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def make_drifted_funnel(n: int = 3000, seed: int = 7, *, dated: bool = False) -> dict:
    """Leads created uniformly over 2017-2018. Conversion depends on visits, pages, channel,
        region and company size; visits grow and the base rate falls over time (drift). `Call
        Duration` is the leak: minutes of a sales call, non-zero mostly for converters; `Days Since
    Launch` depends only on when the lead was created.

        dateless (default): customers have no `converted_at` (the label is "ever converted").
        dated: each converter converts 5-400 days after creation (`converted_at` set), so the
        data ends in 2019 and the default cut-off falls in it."""
    rng = np.random.default_rng(seed)
    t = np.sort(rng.uniform(0, 1, n))
    created = [START + dt.timedelta(days=float(DAYS * x)) for x in t]
    visits = rng.poisson(2.0 + 3.0 * t)
    pages = np.round(rng.gamma(2.0, 2.0 + t, n), 1)
    channel = np.array(
        [rng.choice(len(CHANNELS), p=[0.4 - 0.2 * x, 0.2, 0.2, 0.2 + 0.2 * x]) for x in t]
    )
    region = rng.integers(0, len(REGIONS), n)
    employees = rng.integers(5, 3000, n)
    logit = (
        -1.0
        + 0.45 * (visits - 3.5)
        + 0.25 * (pages - 5.0)
        + 1.1 * (channel == 1)
        - 0.9 * (channel == 3)
        + 0.4 * (region == 2)
        + 0.0006 * (employees - 1500)
        - 0.8 * t
    )
    y = (rng.random(n) < _sigmoid(logit)).astype(int)
    call = np.where(y == 1, rng.gamma(4.0, 6.0, n), np.where(rng.random(n) < 0.03, 2.0, 0.0))
    leads = []
    for i in range(n):
        converted_at = None
        if dated and y[i]:
            converted_at = created[i] + dt.timedelta(days=float(rng.uniform(5, 400)))
        leads.append(
            Lead(
                email=f"f{i}@firm{i % 97}.com",
                employees=int(employees[i]),
                source="import",
                created_at=created[i],
                lifecycle_stage="customer" if y[i] else "lead",
                converted_at=converted_at,
                attributes={
                    "Visits": int(visits[i]),
                    "Pages": float(pages[i]),
                    "Channel": CHANNELS[channel[i]],
                    "Region": REGIONS[region[i]],
                    "Call Duration": round(float(call[i]), 1),
                    # A date in disguise: grows with creation time, so a time split's test
                    # values lie beyond every training value.
                    "Days Since Launch": round(float(DAYS * t[i]), 2),
                },
            )
        )
    Lead.objects.bulk_create(leads, batch_size=1000)
    ids = np.asarray(Lead.objects.order_by("id").values_list("id", flat=True))
    return {
        "ids": ids,
        "y": y,
        "numeric": np.column_stack([visits, pages, employees]).astype(float),
        "categorical": np.column_stack(
            [np.asarray(CHANNELS)[channel], np.asarray(REGIONS)[region]]
        ),
    }


def baseline_test_auc(data: dict, lead_ids: np.ndarray, y: np.ndarray, split) -> float:
    """A plain scikit-learn logistic regression on the generated attributes (no leak), fitted
    on exactly the product's training leads and scored on its test leads."""
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    position = np.searchsorted(data["ids"], lead_ids)
    numeric = data["numeric"][position]
    categorical = data["categorical"][position]
    X = np.empty((len(position), numeric.shape[1] + categorical.shape[1]), dtype=object)
    X[:, : numeric.shape[1]] = numeric
    X[:, numeric.shape[1] :] = categorical
    p_num = numeric.shape[1]
    model = Pipeline(
        [
            (
                "prepare",
                ColumnTransformer(
                    [
                        ("num", StandardScaler(), list(range(p_num))),
                        ("cat", OneHotEncoder(handle_unknown="ignore"), [p_num, p_num + 1]),
                    ]
                ),
            ),
            ("model", LogisticRegression(max_iter=2000)),
        ]
    )
    model.fit(X[split.train], y[split.train])
    return float(roc_auc_score(y[split.test], model.predict_proba(X[split.test])[:, 1]))
