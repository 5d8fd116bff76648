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


def test_the_broker_check_reports_an_unreachable_broker_for_real(db):
    from leadscoring.health import check_broker

    assert check_broker() is None
    assert check_broker("redis://127.0.0.1:1/0").startswith("broker:")
