from unittest import mock

from django.test import Client


def test_healthz_is_public_and_ok_when_database_and_broker_are_up(db):
    response = Client().get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_healthz_answers_503_naming_the_broker_when_it_is_down(db):
    with mock.patch("leadscoring.health.check_broker", return_value="broker: OperationalError"):
        response = Client().get("/healthz")
    assert response.status_code == 503
    assert response.json()["down"] == ["broker: OperationalError"]


def test_healthz_reports_an_unreachable_broker_for_real(db, settings):
    from leadscoring.celery import app
    from leadscoring.health import check_broker

    original = app.conf.broker_url
    app.conf.broker_url = "redis://127.0.0.1:1/0"
    try:
        assert check_broker().startswith("broker:")
    finally:
        app.conf.broker_url = original
