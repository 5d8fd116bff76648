"""Every operator against the naive reference, exhaustively over the test value pools.

The random rule sets of test_score_leads reach each operator/value/lead-value combination only
by luck; here every condition that can be built from the pools is evaluated over a column that
holds every lead value of every pool (so strings meet numbers, bools meet "true", and so on).
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from scoring.engine.columns import ColumnView
from scoring.engine.predicates import evaluate

from . import naive_reference as ref
from .strategies import LEAD_VALUES, NUMBERS, NUMERIC_EMPLOYEES, OPS, RULE_VALUES

ALL_LEAD_VALUES: list[Any] = [v for pool in LEAD_VALUES.values() for v in pool]
ALL_RULE_VALUES: list[Any] = list(
    dict.fromkeys((type(v), v) for pool in RULE_VALUES.values() for v in pool)
)


def every_condition() -> list[tuple[str, Any]]:
    scalars = [v for _, v in ALL_RULE_VALUES]
    conditions: list[tuple[str, Any]] = []
    for op in OPS:
        if op in ("eq", "neq", "contains", "not_contains"):
            conditions += [(op, v) for v in scalars]
        elif op in ("in", "not_in"):
            conditions += [(op, [a, b]) for a, b in itertools.combinations(scalars, 2)]
        elif op in ("gte", "lte"):
            conditions += [(op, v) for v in [*NUMBERS, 0.5, 1e6]]
        elif op == "between":
            conditions += [
                (op, sorted(p)) for p in itertools.combinations_with_replacement([*NUMBERS, 1e6], 2)
            ]
        else:
            conditions.append((op, None))
    return conditions


def test_every_operator_agrees_with_the_reference_on_mixed_columns():
    view = ColumnView(np.array(ALL_LEAD_VALUES, dtype=object), len(ALL_LEAD_VALUES))
    for op, value in every_condition():
        got = evaluate(view, op, value).tolist()
        want = [ref.holds(v, op, value) for v in ALL_LEAD_VALUES]
        assert got == want, (
            op,
            value,
            [v for v, g, w in zip(ALL_LEAD_VALUES, got, want, strict=True) if g != w],
        )


def test_every_operator_agrees_with_the_reference_on_numeric_columns():
    for dtype in (np.float64, np.int64):
        values = NUMERIC_EMPLOYEES if dtype is np.float64 else [0, 50, 199, 200, -5, 10**6]
        view = ColumnView(np.array(values, dtype=dtype), len(values))
        python_values = np.array(values, dtype=dtype).tolist()
        for op, value in every_condition():
            got = evaluate(view, op, value).tolist()
            want = [ref.holds(v, op, value) for v in python_values]
            assert got == want, (dtype, op, value)


def test_email_domain_type_agrees_with_the_reference():
    emails = LEAD_VALUES["email"]
    view = ColumnView(np.array(emails, dtype=object), len(emails)).email_domain_types()
    for op, value in every_condition():
        got = evaluate(view, op, value).tolist()
        want = [
            ref.holds(ref.lead_value({"email": e}, "email_domain_type"), op, value) for e in emails
        ]
        assert got == want, (op, value)
