"""Admins manage users: invite (with a one-time set-password link), change role, deactivate
and reactivate; every change is audited; the last admin is protected."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client

from scoring.models import UserAudit
from scoring.roles import can, user_roles
from scoring.services.users import (
    UserChangeRefused,
    user_invite,
    user_set_active,
    user_set_role,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def plain_admin(role_users):
    """The fixture's admin is a superuser (always an admin); this one is admin by group only,
    so the last-admin guard has someone to protect."""
    admin = role_users["admin"]
    admin.is_superuser = False
    admin.save()
    return admin


def test_an_invited_user_has_the_role_no_usable_password_and_an_audit_entry(role_users):
    admin = role_users["admin"]
    invitation = user_invite(admin, username="newbie", email="newbie@example.com", role="manager")

    user = User.objects.get(username="newbie")
    assert user.is_active and not user.has_usable_password()
    assert user_roles(user) == {"manager"}
    assert invitation.set_password_path.startswith("/accounts/reset/")
    entry = UserAudit.objects.get(user=user)
    assert (entry.actor, entry.action, entry.details["role"]) == (admin, "invite", "manager")


@pytest.mark.parametrize(
    "fields",
    [
        {"username": "ops", "email": "x@example.com", "role": "sales"},
        {"username": "OPS", "email": "x@example.com", "role": "sales"},
        {"username": "x", "email": "not-an-email", "role": "sales"},
        {"username": "x", "email": "x@example.com", "role": "superhero"},
    ],
)
def test_an_invitation_is_refused_for_a_taken_name_a_bad_email_or_an_unknown_role(
    role_users, fields
):
    before = User.objects.count()
    with pytest.raises(UserChangeRefused):
        user_invite(role_users["admin"], **fields)
    assert User.objects.count() == before
    assert not UserAudit.objects.exists()


def test_a_role_change_replaces_the_role_and_keeps_other_groups(role_users):
    rep = role_users["sales1"]
    rep.groups.add(Group.objects.create(name="newsletter"))

    user_set_role(role_users["admin"], rep, "manager")

    rep = User.objects.get(pk=rep.pk)
    assert user_roles(rep) == {"manager"} and can(rep, "view_kpis")
    assert rep.groups.filter(name="newsletter").exists()
    entry = UserAudit.objects.get(user=rep, action="role")
    assert entry.details == {"before": "sales", "after": "manager"}


def test_the_last_admin_cannot_lose_the_role_or_be_deactivated(role_users, plain_admin):
    with pytest.raises(UserChangeRefused, match="last admin"):
        user_set_role(role_users["ops"], plain_admin, "sales")
    with pytest.raises(UserChangeRefused, match="last admin"):
        user_set_active(role_users["ops"], plain_admin, False)
    assert user_roles(User.objects.get(pk=plain_admin.pk)) == {"admin"}

    user_set_role(plain_admin, role_users["manager"], "admin")
    user_set_role(plain_admin, plain_admin, "sales")
    assert user_roles(User.objects.get(pk=plain_admin.pk)) == {"sales"}


def test_an_inactive_admin_does_not_count_as_another_admin(role_users, plain_admin):
    other = role_users["manager"]
    user_set_role(plain_admin, other, "admin")
    user_set_active(plain_admin, other, False)
    with pytest.raises(UserChangeRefused, match="last admin"):
        user_set_active(role_users["ops"], plain_admin, False)


def test_an_admin_cannot_deactivate_themself(role_users):
    admin = role_users["admin"]
    with pytest.raises(UserChangeRefused, match="yourself"):
        user_set_active(admin, admin, False)
    assert User.objects.get(pk=admin.pk).is_active


def test_a_deactivated_user_is_logged_out_and_can_be_reactivated(role_users, client_as):
    rep_client = client_as("sales1")
    assert rep_client.get("/leads/").status_code == 200

    user_set_active(role_users["admin"], role_users["sales1"], False)
    assert rep_client.get("/leads/").status_code == 302

    user_set_active(role_users["admin"], User.objects.get(username="sales1"), True)
    actions = list(
        UserAudit.objects.filter(user=role_users["sales1"])
        .order_by("at", "pk")
        .values_list("action", flat=True)
    )
    assert actions == ["deactivate", "reactivate"]


def test_the_users_page_lists_users_with_roles_and_the_audit_trail(client_as, role_users):
    user_set_role(role_users["admin"], role_users["sales2"], "manager")
    page = client_as("admin").get("/users/").content.decode()
    for username in ("ops", "sales1", "sales2", "manager", "admin"):
        assert f'data-username="{username}"' in page
    assert "Role changed" in page


def test_inviting_on_the_page_shows_a_set_password_link_that_works_once(client_as):
    response = client_as("admin").post(
        "/users/invite/", {"username": "newbie", "email": "n@example.com", "role": "sales"}
    )
    assert response.status_code == 200
    link = response.context["invitation_link"]
    assert link.startswith("http://testserver/accounts/reset/")

    anonymous = Client()
    form_page = anonymous.get(link, follow=True)
    assert form_page.status_code == 200 and form_page.context["validlink"]
    set_url = form_page.redirect_chain[-1][0]
    done = anonymous.post(
        set_url, {"new_password1": "A-long-pass-4321", "new_password2": "A-long-pass-4321"}
    )
    assert done.status_code == 302 and done["Location"] == "/accounts/reset/done/"
    assert anonymous.get("/accounts/reset/done/").status_code == 200

    login = Client().post(
        "/accounts/login/", {"username": "newbie", "password": "A-long-pass-4321"}
    )
    assert login.status_code == 302 and "/accounts/login/" not in login["Location"]
    again = Client().get(link, follow=True)
    assert again.status_code == 200 and not again.context["validlink"]


def test_the_page_reports_a_refused_invitation_and_a_refused_deactivation(client_as, role_users):
    admin = client_as("admin")
    response = admin.post(
        "/users/invite/", {"username": "ops", "email": "o@example.com", "role": "sales"}
    )
    assert response.status_code == 400 and "taken" in response.content.decode()

    response = admin.post(f"/users/{role_users['admin'].pk}/active/", {"active": "0"}, follow=True)
    assert "cannot deactivate yourself" in response.content.decode()
    assert User.objects.get(username="admin").is_active


def test_the_page_changes_a_role_and_deactivates_a_user(client_as, role_users):
    admin = client_as("admin")
    admin.post(f"/users/{role_users['sales1'].pk}/role/", {"role": "marketing_ops"})
    admin.post(f"/users/{role_users['sales2'].pk}/active/", {"active": "0"})
    assert user_roles(User.objects.get(username="sales1")) == {"marketing_ops"}
    assert not User.objects.get(username="sales2").is_active


def test_only_admins_change_users(client_as, role_users):
    target = role_users["sales2"]
    for username in ("ops", "manager", "sales1"):
        client = client_as(username)
        assert client.post(f"/users/{target.pk}/active/", {"active": "0"}).status_code == 403
        assert client.post(f"/users/{target.pk}/role/", {"role": "admin"}).status_code == 403
        response = client.post(
            "/users/invite/", {"username": "x", "email": "x@example.com", "role": "admin"}
        )
        assert response.status_code == 403
    assert User.objects.get(pk=target.pk).is_active and not User.objects.filter(username="x")


def test_leads_are_browsable_in_django_admin_without_a_query_per_row(client_as, role_users):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from tests.factories import LeadFactory

    for i in range(3):
        LeadFactory(owner=role_users["sales1"], company=f"Acme {i}")
    admin = client_as("admin")
    with CaptureQueriesContext(connection) as few:
        assert admin.get("/admin/scoring/lead/").status_code == 200
    for i in range(10):
        LeadFactory(owner=role_users[("sales1", "sales2")[i % 2]])
    with CaptureQueriesContext(connection) as many:
        response = admin.get("/admin/scoring/lead/?q=acme")
    assert response.status_code == 200 and "Acme 1" in response.content.decode()
    assert len(many) == len(few)
    assert admin.get("/admin/scoring/event/").status_code == 200


def test_set_password_links_are_not_reused_across_users(role_users):
    invitation = user_invite(role_users["admin"], username="a1", email="a1@x.io", role="sales")
    other = user_invite(role_users["admin"], username="a2", email="a2@x.io", role="sales")
    uid_a = re.search(r"/reset/([^/]+)/", invitation.set_password_path).group(1)
    token_b = other.set_password_path.rstrip("/").rsplit("/", 1)[1]
    forged = Client().get(f"/accounts/reset/{uid_a}/{token_b}/", follow=True)
    assert not forged.context["validlink"]


def test_an_admin_by_role_reaches_leads_and_events_in_django_admin(role_users, plain_admin):
    invitation = user_invite(plain_admin, username="boss", email="b@x.io", role="admin")
    boss = User.objects.get(pk=invitation.user_id)
    assert boss.is_staff and not boss.is_superuser
    client = Client()
    client.force_login(boss)
    assert client.get("/admin/scoring/lead/").status_code == 200
    assert client.get("/admin/scoring/event/").status_code == 200
    assert client.get("/admin/scoring/lead/add/").status_code == 403

    user_set_role(plain_admin, boss, "manager")
    assert not User.objects.get(pk=boss.pk).is_staff
