"""Column preparation: missing values, text forms, factorising, email domain types."""

from __future__ import annotations

import math
from decimal import Decimal

import numpy as np
import pytest

from scoring.engine import FREE_EMAIL_DOMAINS, email_domain_type
from scoring.engine.columns import ColumnView
from scoring.engine.predicates import evaluate


@pytest.mark.parametrize(
    ("email", "kind"),
    [
        ("ann@gmail.com", "free"),
        (" Ann@GMAIL.com ", "free"),
        ("bo@gmx.es", "free"),
        ("bo@yandex.kz", "free"),
        ("cy@proton.me", "free"),
        ("dee@acme.io", "business"),
        ("ed@mail.acme.com", "business"),
        ("weird@name@corp.com", "business"),
        ("nobody", None),
        ("trailing@", None),
        ("", None),
        ("   ", None),
        (None, None),
    ],
)
def test_email_domain_type_classifies_free_providers(email, kind):
    assert email_domain_type(email) == kind


def test_the_free_domain_list_covers_the_common_providers():
    for domain in (
        "gmail.com",
        "yahoo.com",
        "hotmail.com",
        "outlook.com",
        "icloud.com",
        "aol.com",
        "protonmail.com",
        "qq.com",
        "163.com",
        "zoho.com",
    ):
        assert domain in FREE_EMAIL_DOMAINS


def forms(values):
    view = ColumnView(np.array(values, dtype=object), len(values))
    return (
        view.gather(view.missing).tolist(),
        view.gather(view.text).tolist(),
        view.gather(view.parsed).tolist(),
    )


def test_missing_values_are_none_nan_and_blank_strings():
    missing, text, _ = forms([None, math.nan, np.float64("nan"), "", " \t", Decimal("NaN"), 0, "0"])
    assert missing == [True, True, True, True, True, True, False, False]
    assert text[-2:] == ["0", "0"]


def test_bools_ints_and_floats_keep_their_own_text_in_one_column():
    # True == 1 == 1.0 as Python dict keys: factorising must not merge them.
    _, text, parsed = forms([True, 1, 1.0, "1", True, 1, 1.0, "1"])
    assert text == ["true", "1", "1.0", "1"] * 2
    assert parsed[:4] == [pytest.approx(math.nan, nan_ok=True), 1.0, 1.0, 1.0]


def test_unhashable_values_are_handled():
    view = ColumnView(np.array([{"a": 1}, ["x"], None], dtype=object), 3)
    assert view.gather(view.missing).tolist() == [False, False, True]
    assert evaluate(view, "contains", "a").tolist() == [True, False, False]


def test_numpy_scalars_and_decimals_are_numbers():
    view = ColumnView(
        np.array([np.int64(5), np.float32(2.5), Decimal("7.50"), "7.5"], dtype=object), 4
    )
    assert evaluate(view, "gte", 5).tolist() == [True, False, True, True]
    assert evaluate(view, "eq", 7.5).tolist() == [False, False, True, True]


def test_text_forms_of_numeric_columns_are_built_on_demand():
    view = ColumnView(np.array([1.0, np.nan, 3.5]), 3)
    assert evaluate(view, "contains", ".5").tolist() == [False, False, True]
    assert evaluate(view, "eq", "1.0").tolist() == [True, False, False]
    assert evaluate(view, "is_not_set", None).tolist() == [False, True, False]


def test_high_and_low_cardinality_columns_agree():
    rng = np.random.default_rng(7)
    words = np.array(["Engineer", "cto", " ENGINEERING lead", None, "", 5, True], dtype=object)
    low = words[rng.integers(0, len(words), 5000)]
    high = np.array(
        [f"{w} #{i}" if isinstance(w, str) else w for i, w in enumerate(low)], dtype=object
    )
    for column in (low, high):
        view = ColumnView(column, len(column))
        expected = [isinstance(v, str) and "engineer" in v.casefold() for v in column.tolist()]
        assert evaluate(view, "contains", "Engineer").tolist() == expected
