"""Forms of the profile and users pages: they only type the inputs; the rules (a taken
username, the last admin) are the services' (`scoring.services.users`, `.api_tokens`)."""

from __future__ import annotations

from django import forms
from django.conf import settings

from scoring.roles import ROLES
from scoring.selectors.users import time_zone_names
from scoring.services.api_tokens import MAX_EXPIRY_DAYS

ROLE_CHOICES = [(role, role.replace("_", " ").capitalize()) for role in ROLES]


class ApiTokenCreateForm(forms.Form):
    expires_days = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=MAX_EXPIRY_DAYS,
        label="Expires after (days)",
        help_text="Leave empty for a token that does not expire.",
    )


def _time_zone_choices() -> list[tuple[str, str]]:
    return [("", f"The site's ({settings.TIME_ZONE})")] + [(n, n) for n in time_zone_names()]


class TimeZoneForm(forms.Form):
    time_zone = forms.ChoiceField(
        choices=_time_zone_choices,
        required=False,
        label="Time zone",
        help_text="Times and dates on the pages are shown in it (the KPI page keeps the "
        "site's days).",
    )


class UserInviteForm(forms.Form):
    username = forms.RegexField(
        regex=r"^[\w.@+-]+\Z",
        max_length=150,
        error_messages={"invalid": "Letters, digits and @ . + - _ only."},
    )
    email = forms.EmailField()
    role = forms.ChoiceField(choices=ROLE_CHOICES)


class UserRoleForm(forms.Form):
    role = forms.ChoiceField(choices=ROLE_CHOICES)


class UserActiveForm(forms.Form):
    active = forms.TypedChoiceField(
        choices=[("1", "active"), ("0", "inactive")], coerce=lambda value: value == "1"
    )
