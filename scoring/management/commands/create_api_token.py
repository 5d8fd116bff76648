"""manage.py create_api_token USERNAME: a new API token for a user, printed as the last line.

A user has one token (DRF's authtoken model), so creating a new one revokes the old one."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from rest_framework.authtoken.models import Token


class Command(BaseCommand):
    help = "Create a new API token for USERNAME (replacing any previous one) and print it."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")

    def handle(self, *args: Any, username: str, **options: Any) -> None:
        try:
            user = get_user_model().objects.get(username=username)
        except get_user_model().DoesNotExist:
            raise CommandError(f"no user {username!r}") from None
        if not user.is_active:
            raise CommandError(f"user {username!r} is inactive")
        with transaction.atomic():
            replaced = Token.objects.filter(user=user).delete()[0]
            token = Token.objects.create(user=user)
        if replaced:
            self.stderr.write(f"The previous token of {username} no longer works.")
        self.stdout.write(f"API token for {username} (send it as 'Authorization: Token <key>'):")
        self.stdout.write(token.key)
