"""`train_model --json` keeps its contract; /models/ lets ops train and managers read."""

import io
import json

import pytest
from django.core.management import call_command

from scoring.ml import registry
from scoring.ml.training import LOGISTIC, train_models
from scoring.models import MLModel
from tests.factories import LeadFactory
from tests.ml.conftest import make_dated


def test_train_model_json_prints_one_object_with_the_contract_keys(db, live_rules):
    make_dated(800)
    out = io.StringIO()
    call_command("train_model", "--json", "--activate", stdout=out)
    result = json.loads(out.getvalue())
    assert {"split", "n_train", "n_test", "features", "models", "rules_roc_auc"} <= set(result)
    assert result["split"] == "time" and isinstance(result["features"], list)
    for model in result["models"]:
        assert {"name", "roc_auc", "pr_auc", "brier", "ece", "lift_top_decile"} <= set(model)
    assert {m["name"] for m in result["models"]} == {LOGISTIC, "hist_gradient_boosting"}
    assert registry.active_model().pk == result["activated"]


def test_train_model_reports_an_impossible_label_as_a_command_error(db):
    from django.core.management.base import CommandError

    LeadFactory.create_batch(3)
    with pytest.raises(CommandError, match="same label"):
        call_command("train_model", "--json", stdout=io.StringIO())


@pytest.mark.parametrize(
    ("user", "get", "post"),
    [("ops", 200, 302), ("manager", 200, 403), ("sales1", 403, 403), ("admin", 403, 403)],
)
def test_models_page_roles(client_as, user, get, post, django_capture_on_commit_callbacks):
    client = client_as(user)
    assert client.get("/models/").status_code == get
    with django_capture_on_commit_callbacks(execute=False):
        response = client.post("/models/", {"label": "customer"})
    assert response.status_code == post
    if post == 302:
        assert MLModel.objects.filter(status=MLModel.Status.QUEUED).count() == 2


def test_ops_see_a_progress_fragment_that_polls_while_training(client_as):
    client = client_as("ops")
    response = client.post("/models/", {"label": "customer"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    body = response.content.decode()
    assert 'hx-trigger="every 1s"' in body and "<progress" in body
    run_key = MLModel.objects.first().run_key
    assert client_as("manager").get(f"/models/progress/{run_key}/").status_code == 200


def test_the_page_shows_metrics_calibration_and_suggestions_and_ops_can_act(
    client_as, live_rules, django_capture_on_commit_callbacks
):
    make_dated(800)
    report = train_models()
    logistic = next(r for r in report.rows if r.algorithm == LOGISTIC)
    body = client_as("manager").get("/models/").content.decode()
    assert 'id="fig-calibration"' in body
    assert "vendor/plotly-cartesian/plotly-cartesian.min.js" in body
    assert 'data-testid="suggested-weights"' in body and "Apply as new draft" not in body
    ops = client_as("ops")
    assert "Apply as new draft" in ops.get("/models/").content.decode()
    with django_capture_on_commit_callbacks(execute=False):
        assert ops.post(f"/models/{logistic.pk}/activate/").status_code == 302
    assert registry.active_model() == logistic
    assert ops.post(f"/models/{logistic.pk}/apply/").status_code == 302
    assert client_as("manager").post(f"/models/{logistic.pk}/activate/").status_code == 403
    lead_id = LeadFactory().pk  # owned by nobody: sales reps may not see it
    fragment = ops.get(f"/models/explain/{lead_id}/")
    assert fragment.status_code == 200 and b"Pushes it up" in fragment.content
    assert client_as("sales1").get(f"/models/explain/{lead_id}/").status_code == 404
