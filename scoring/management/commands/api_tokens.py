"""manage.py api_tokens list [USERNAME] | revoke PREFIX: the API tokens, by prefix.

Tokens are stored hashed, so they are listed by their prefix (the first characters, which
`create_api_token` prints), their user, creation and expiry; `revoke` deletes every token
whose prefix starts with the given one."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from knox.models import AuthToken

MIN_PREFIX = 6


class Command(BaseCommand):
    help = "List API tokens (by prefix) or revoke one."

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        listing = actions.add_parser("list", help="List tokens, optionally of one user.")
        listing.add_argument("username", nargs="?")
        revoking = actions.add_parser("revoke", help="Revoke the token with this prefix.")
        revoking.add_argument("prefix")

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        if action == "list":
            tokens = AuthToken.objects.select_related("user").order_by("user__username", "created")
            if options.get("username"):
                tokens = tokens.filter(user__username=options["username"])
            for token in tokens:
                expiry = f"{token.expiry:%Y-%m-%d %H:%M}" if token.expiry else "never"
                self.stdout.write(
                    f"{token.token_key}  {token.user.get_username()}  "
                    f"created {token.created:%Y-%m-%d %H:%M}  expires {expiry}"
                )
            return
        prefix = options["prefix"]
        if len(prefix) < MIN_PREFIX:
            raise CommandError(f"give at least {MIN_PREFIX} characters of the prefix")
        deleted = AuthToken.objects.filter(token_key__startswith=prefix).delete()[0]
        if not deleted:
            raise CommandError(f"no token with prefix {prefix!r}")
        self.stdout.write(f"Revoked {deleted} token(s).")
