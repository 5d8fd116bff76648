"""Labels (within N days of the cut-off, or ever without dates) and the split they lead to."""

import datetime as dt

import numpy as np
import pytest
from django.utils import timezone

from scoring.ml.labels import LabelError, Labels, build_labels
from scoring.ml.training import choose_split
from tests.factories import LeadFactory


def test_dated_labels_count_conversions_within_the_horizon_after_the_cutoff(db):
    cutoff = timezone.now() - dt.timedelta(days=100)
    old = cutoff - dt.timedelta(days=30)
    inside = LeadFactory(
        created_at=old, lifecycle_stage="customer", converted_at=cutoff + dt.timedelta(days=10)
    )
    too_late = LeadFactory(
        created_at=old, lifecycle_stage="customer", converted_at=cutoff + dt.timedelta(days=95)
    )
    already = LeadFactory(
        created_at=old, lifecycle_stage="customer", converted_at=cutoff - dt.timedelta(days=1)
    )
    never = LeadFactory(created_at=old)
    born_later = LeadFactory(created_at=cutoff + dt.timedelta(days=1))
    undated_customer = LeadFactory(created_at=old, lifecycle_stage="customer")

    labels = build_labels("customer", horizon_days=90, cutoff=cutoff)
    got = dict(zip(labels.ids.tolist(), labels.y.tolist(), strict=True))
    assert got == {inside.pk: 1, too_late.pk: 0, never.pk: 0}
    assert already.pk not in got and born_later.pk not in got and undated_customer.pk not in got
    assert labels.dated and labels.horizon_days == 90


def test_an_earlier_stage_counts_leads_that_went_further(db):
    cutoff = timezone.now() - dt.timedelta(days=100)
    old = cutoff - dt.timedelta(days=30)
    customer = LeadFactory(
        created_at=old, lifecycle_stage="customer", converted_at=cutoff + dt.timedelta(days=5)
    )
    LeadFactory(created_at=old)
    labels = build_labels("mql", horizon_days=90, cutoff=cutoff)
    assert dict(zip(labels.ids.tolist(), labels.y.tolist(), strict=True))[customer.pk] == 1


def test_without_dates_the_label_is_ever_reaching_the_stage(db):
    customer = LeadFactory(lifecycle_stage="customer")
    lead = LeadFactory()
    labels = build_labels("customer")
    assert not labels.dated and labels.horizon_days is None
    assert dict(zip(labels.ids.tolist(), labels.y.tolist(), strict=True)) == {
        customer.pk: 1,
        lead.pk: 0,
    }


def test_one_outcome_only_is_refused_clearly(db):
    LeadFactory.create_batch(3)
    with pytest.raises(LabelError, match="same label"):
        build_labels("customer")
    with pytest.raises(LabelError, match="Unknown stage"):
        build_labels("won")


def _labels(created_days: np.ndarray, seed: int = 0) -> Labels:
    rng = np.random.default_rng(seed)
    n = created_days.size
    return Labels(
        ids=np.arange(1, n + 1),
        y=(rng.random(n) < 0.3).astype(np.int64),
        created_epoch=1.7e9 + created_days * 86400.0,
        stage="customer",
        cutoff=timezone.now(),
        horizon_days=None,
        dated=False,
    )


def test_spread_creation_times_give_a_time_split_earlier_train_later_test():
    labels = _labels(np.random.default_rng(1).uniform(0, 365, 1000))
    split = choose_split(labels)
    assert split.kind == "time"
    assert labels.created_epoch[split.train].max() <= labels.created_epoch[split.test].min()
    assert split.test.size == 300
    assert labels.created_epoch[split.fit].max() <= labels.created_epoch[split.validation].min()


def test_creation_times_at_one_moment_give_a_stratified_split_with_a_fixed_seed():
    labels = _labels(np.zeros(1000))
    split = choose_split(labels)
    assert split.kind == "stratified"
    assert abs(labels.y[split.train].mean() - labels.y[split.test].mean()) < 0.01
    again = choose_split(labels)
    assert np.array_equal(split.test, again.test)
    assert not set(split.train) & set(split.test)
