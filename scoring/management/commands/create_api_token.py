"""manage.py create_api_token USERNAME [--expires-days N] [--keep-existing]: a new API token for
a user, printed as the last line.

Only the token's SHA-512 digest and its prefix are stored (django-rest-knox), so this is the one
time the token is shown. By default the user's previous tokens are revoked (one token per user,
as before); `--keep-existing` adds a token beside them. `manage.py api_tokens` lists and revokes."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from scoring.selectors.api_tokens import api_tokens_of
from scoring.services.api_tokens import TokenInvalid, token_create


class Command(BaseCommand):
    help = "Create a new API token for USERNAME and print it (shown only this once)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument(
            "--expires-days", type=int, default=None, help="The token stops working after N days."
        )
        parser.add_argument(
            "--keep-existing",
            action="store_true",
            help="Keep the user's other tokens (by default they are revoked).",
        )

    def handle(
        self,
        *args: Any,
        username: str,
        expires_days: int | None,
        keep_existing: bool,
        **options: Any,
    ) -> None:
        try:
            user = get_user_model().objects.get(username=username)
        except get_user_model().DoesNotExist:
            raise CommandError(f"no user {username!r}") from None
        if expires_days is not None and expires_days < 1:
            raise CommandError("--expires-days must be at least 1")
        had_tokens = not keep_existing and bool(api_tokens_of(user))
        try:
            instance, token = token_create(user, expires_days, replace_existing=not keep_existing)
        except TokenInvalid as exc:
            raise CommandError(str(exc)) from None
        if had_tokens:
            self.stderr.write(f"The previous token of {username} no longer works.")
        until = f", valid until {instance.expiry:%Y-%m-%d %H:%M} UTC" if instance.expiry else ""
        self.stdout.write(
            f"API token for {username} (prefix {instance.token_key}{until}; send it as "
            "'Authorization: Token <key>'; it is not stored and cannot be shown again):"
        )
        self.stdout.write(token)
