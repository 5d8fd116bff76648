"""Who gets what on the lead queue, lead page, feedback and feedback review, page and API.

Users: ops (marketing ops), sales1 (owns the lead), sales2 (another rep), manager, admin
(a superuser, who counts as the admin role and gets no more), integrator (in the admin group
but not a superuser), and anonymous visitors. Admins may view leads, not judge them."""

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client

from scoring.urls import urlpatterns
from tests.pages.factories import ScoredLeadFactory

LOGIN = "login"
USERS = ("ops", "sales1", "sales2", "manager", "admin", "integrator", "anonymous")

# (method, path template, htmx?) -> expected status per user; LOGIN means a redirect to the
# login page. {lead} is a lead owned by sales1.
MATRIX = {
    ("GET", "/leads/"): dict.fromkeys(
        ("ops", "sales1", "sales2", "manager", "admin", "integrator"), 200
    ),
    ("GET", "/leads/export.csv"): dict.fromkeys(
        ("ops", "sales1", "sales2", "manager", "admin", "integrator"), 200
    ),
    ("GET", "/leads/{lead}/"): {
        "ops": 200,
        "sales1": 200,
        "sales2": 404,
        "manager": 200,
        "admin": 200,
        "integrator": 200,
    },
    ("POST", "/leads/{lead}/feedback/"): {
        "ops": 200,
        "sales1": 200,
        "sales2": 404,
        "manager": 200,
        "admin": 403,
        "integrator": 403,
    },
    # Anyone who sees the lead may post; only its assigned rep's accept changes anything.
    ("POST", "/leads/{lead}/accept/"): {
        "ops": 302,
        "sales1": 302,
        "sales2": 404,
        "manager": 302,
        "admin": 302,
        "integrator": 302,
    },
    ("GET", "/feedback/"): {
        "ops": 200,
        "sales1": 403,
        "sales2": 403,
        "manager": 200,
        "admin": 403,
        "integrator": 403,
    },
}
for expectations in MATRIX.values():
    expectations.setdefault("anonymous", LOGIN)

API_MATRIX = {
    ("POST", "/api/v1/leads/{lead}/feedback/"): {
        "ops": 201,
        "sales1": 201,
        "sales2": 404,
        "manager": 201,
        "admin": 403,
        "integrator": 403,
        "anonymous": (401, 403),
    },
}

CASES = [
    (method, path, user, expected)
    for matrix in (MATRIX, API_MATRIX)
    for (method, path), expectations in matrix.items()
    for user, expected in expectations.items()
]


@pytest.fixture
def clients(role_users):
    integrator = User.objects.create_user("integrator")
    integrator.groups.add(Group.objects.get_or_create(name="admin")[0])
    users = {**role_users, "integrator": integrator}

    def make(username):
        client = Client()
        if username != "anonymous":
            client.force_login(users[username])
        return client

    return make


def test_the_matrix_names_every_user_for_every_page():
    for expectations in (*MATRIX.values(), *API_MATRIX.values()):
        assert set(expectations) == set(USERS)


def test_the_matrix_covers_every_route_of_these_pages():
    covered = {path.split("{")[0] for _, path in MATRIX}
    for pattern in urlpatterns:
        route = str(pattern.pattern)
        if route.startswith(("leads/", "feedback/")):
            assert "/" + route.split("<")[0] in covered, route
            assert getattr(pattern.callback, "capability", None), route


@pytest.mark.parametrize(("method", "path", "user", "expected"), CASES)
def test_role_matrix(clients, role_users, method, path, user, expected):
    lead = ScoredLeadFactory(owner=role_users["sales1"])
    url = path.format(lead=lead.pk)
    client = clients(user)
    if method == "GET":
        response = client.get(url)
    elif url.startswith("/api/"):
        response = client.post(url, {"verdict": "good"}, content_type="application/json")
    else:
        response = client.post(url, {"verdict": "good"}, HTTP_HX_REQUEST="true")
    if expected == LOGIN:
        assert response.status_code == 302
        assert response["Location"].startswith(f"/accounts/login/?next={url}")
    elif isinstance(expected, tuple):
        assert response.status_code in expected
    else:
        assert response.status_code == expected
