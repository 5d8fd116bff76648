"""A pytest plugin (loaded by `-p` in pyproject.toml, before pytest-django starts Django)
that sets the test run's environment defaults.
Tests run with DEBUG on in the environment (pytest-django still forces settings.DEBUG off),
so the production-only security redirects stay off; the deploy check test runs a separate
process with production settings. Broker files and media go to a throwaway folder so a test
run never shares a queue with a running `make run`."""

import os
import tempfile

os.environ.setdefault("DEBUG", "true")
# A developer's local `.env` (from `make run`) never leaks into a test run.
os.environ.setdefault("LEADSCORING_ENV_FILE", "")
# Each test process gets its own in-memory cache: throttle and lockout counts must not leak
# between test runs through a shared table (tests of the shared cache set it themselves).
os.environ.setdefault("CACHE_URL", "locmemcache://")
os.environ.setdefault("VAR_DIR", tempfile.mkdtemp(prefix="leadscoring-test-"))
