"""The Models page says plainly when a model ranks leads worse than the live rules, folds its
weights away, and tells apart suggested rows that read the same."""

from __future__ import annotations

import uuid

import pytest

from scoring.ml.training import LOGISTIC
from scoring.models import MLModel
from scoring.views.models import suggested_rule_rows

SUGGESTION = {
    "rules": [
        {"rule": "title is set", "index": 0, "name": "", "persona": "Developer",
         "live_points": 5, "suggested_points": 7, "fired": 40, "note": ""},
        {"rule": "title is set", "index": 3, "name": "Has a title", "persona": "",
         "live_points": 5, "suggested_points": 2, "fired": 90, "note": ""},
        {"rule": "employees >= 200", "index": 1, "live_points": 15,
         "suggested_points": 12, "fired": 30, "note": ""},
    ],
    "new_rules": [],
    "scale_points_per_log_odds": 10,
    "based_on_version": 1,
}  # fmt: skip


def stored_model(model_auc: float, rules_auc: float) -> MLModel:
    return MLModel.objects.create(
        run_key=str(uuid.uuid4()),
        algorithm=LOGISTIC,
        status=MLModel.Status.DONE,
        metrics={"overall": {"roc_auc": model_auc}, "rules": {"roc_auc": rules_auc}},
        details={"suggestion": SUGGESTION},
    )


def test_rows_that_read_the_same_get_distinct_labels():
    labels = [r["label"] for r in suggested_rule_rows(SUGGESTION["rules"])]
    assert labels == [
        "title is set (rule 1, persona Developer)",
        "title is set (“Has a title”, rule 4)",
        "employees >= 200",
    ]
    assert len(set(labels)) == len(labels)


@pytest.mark.parametrize("username", ["ops", "manager"])
def test_a_model_weaker_than_the_rules_is_named_and_its_weights_folded(client_as, username):
    stored_model(0.57, 0.79)
    body = client_as(username).get("/models/").content.decode()
    assert 'data-testid="weaker-model"' in body
    assert "ROC AUC 0.570 against the rules' 0.790" in body
    folded = body[body.index('data-testid="weaker-weights"') :]
    assert folded.index('data-testid="suggested-weights"') < folded.index("</details>")
    if username == "ops":
        assert folded.index("Apply as new draft") < folded.index("</details>")


def test_a_stronger_model_shows_its_weights_openly(client_as):
    stored_model(0.85, 0.79)
    body = client_as("ops").get("/models/").content.decode()
    assert 'data-testid="weaker-model"' not in body
    assert (
        'data-testid="suggested-weights"' in body
        and "<details"
        not in body.split('data-testid="suggested-weights"')[0].rsplit("suggest-title", 1)[1]
    )
