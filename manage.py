#!/usr/bin/env python
import os
import sys
from pathlib import Path


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "leadscoring.settings")
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line

    from leadscoring.env import ensure_local_env_file

    if not os.environ.get("DATABASE_URL") and not os.environ.get("LEADSCORING_ENV_FILE"):
        # The embedded default (SQLite): the same local secrets `make run` uses.
        ensure_local_env_file(Path(__file__).resolve().parent / ".env")
    try:
        execute_from_command_line(sys.argv)
    except ImproperlyConfigured as exc:
        # A configuration mistake is one line that names the variable, not a traceback.
        sys.stderr.write(f"Configuration error: {exc}\n")
        sys.exit(2)


if __name__ == "__main__":
    main()
