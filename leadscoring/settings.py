"""Django settings. Every value that differs between machines comes from the environment,
read through `leadscoring.env` (see docs/configuration.md)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from leadscoring.env import (
    env_bool,
    env_cache,
    env_database,
    env_email,
    env_float,
    env_int,
    env_list,
    env_str,
    load_env_file,
)

BASE_DIR = Path(__file__).resolve().parent.parent
# The local set-up keeps its generated secrets in `.env` (written by `make run`), so that
# `manage.py` works there without exporting anything; real environment variables win.
load_env_file(BASE_DIR / ".env")
VAR_DIR = Path(env_str("VAR_DIR", str(BASE_DIR / "var")))

DEBUG = env_bool("DEBUG", False)
SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "The environment variable SECRET_KEY is required when DEBUG is off."
        )
    SECRET_KEY = "insecure-development-key-only-used-with-DEBUG-on"  # noqa: S105

# This machine's own names are always allowed unless ALLOWED_HOSTS says otherwise: a request
# for them comes from here (a health probe, `make run` with DEBUG off).
LOOPBACK_HOSTS = ["127.0.0.1", "localhost", "[::1]"]
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", LOOPBACK_HOSTS)
# LOCAL_HTTP=true: served over plain HTTP on this machine only (`make run` sets it), so the
# HTTPS-only defaults below (redirect, Secure cookies, HSTS) are off even with DEBUG off, and
# only the loopback names are served: the site cannot be reached this way under a real name.
LOCAL_HTTP = env_bool("LOCAL_HTTP", False)
if LOCAL_HTTP and set(ALLOWED_HOSTS) - set(LOOPBACK_HOSTS):
    raise ImproperlyConfigured(
        "LOCAL_HTTP=true serves 127.0.0.1 and localhost only, but ALLOWED_HOSTS names "
        f"{', '.join(sorted(set(ALLOWED_HOSTS) - set(LOOPBACK_HOSTS)))}: serve real host names "
        "over HTTPS (unset LOCAL_HTTP)."
    )
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
TIME_ZONE = env_str("TIME_ZONE", "UTC")
# The currency of lead revenue, as shown on the pages (an ISO 4217 code).
CURRENCY = env_str("CURRENCY", "USD")
USE_TZ = True
LANGUAGE_CODE = "en-us"
USE_I18N = False

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "knox",
    "axes",
    "csp",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "simple_history",
    "django_celery_beat",
    "template_partials",
    "scoring",
    "integrations",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "leadscoring.middleware.LoginRequiredMiddleware",
    "leadscoring.middleware.UserTimeZoneMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "simple_history.middleware.HistoryRequestMiddleware",
    "csp.middleware.CSPMiddleware",
    # Last, as django-axes asks: it turns a locked-out login into its lockout response.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "leadscoring.urls"
WSGI_APPLICATION = "leadscoring.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "leadscoring.context_processors.navigation",
            ],
        },
    }
]

DATABASES = {"default": env_database("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # The embedded default shares one SQLite file between the web server and the worker:
    # WAL lets readers proceed while the worker writes, and IMMEDIATE transactions take the
    # write lock up front so concurrent writers wait instead of failing with "locked".
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": 30,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
    # Tests with a real worker thread write concurrently; an in-memory shared-cache database
    # answers "table is locked" at once instead of waiting, so tests use a file too.
    DATABASES["default"].setdefault("TEST", {})["NAME"] = str(VAR_DIR / "test-db.sqlite3")
else:
    # PostgreSQL's JIT spent about 250 ms compiling each bulk chunk's wide aggregation (one
    # FILTER sum per event rule), more than the query itself took, and the dashboard's
    # queries are too short to repay it: measured at 1M leads, it never paid for itself here.
    pg_options = DATABASES["default"].setdefault("OPTIONS", {})
    pg_options["options"] = f"{pg_options.get('options', '')} -c jit=off".strip()
    DATABASES["default"]["CONN_MAX_AGE"] = env_int("DATABASE_CONN_MAX_AGE", 60, minimum=0)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# One cache shared by every process (gunicorn workers, Celery workers): the API throttles and
# the login lockout count across all of them. Redis when CACHE_URL names it; otherwise a
# table in the database (created by scoring's migration 0012), which needs no other service.
CACHES = {"default": env_cache("CACHE_URL", "dbcache://leadscoring_cache")}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"
AUTHENTICATION_BACKENDS = [
    # django-axes refuses a login while its user and address are locked out, before the
    # password is even checked.
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
# Password guessing: LOGIN_FAILURE_LIMIT wrong passwords for one user from one address lock
# that pair out for LOGIN_COOLOFF_MINUTES (429 and the lockout page). An admin unlocks early by
# deleting the attempt in the admin's "Access attempts" or with `manage.py axes_reset_username`.
AXES_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("LOGIN_COOLOFF_MINUTES", 15, minimum=1))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_VERBOSE = False  # its start-up banner would open every manage.py command's output
AXES_LOCKOUT_TEMPLATE = "registration/locked.html"
if env_bool("BEHIND_TLS_PROXY", False):
    AXES_IPWARE_PROXY_COUNT = 1  # the client's address is the proxy's X-Forwarded-For entry
# Idle sessions expire: every request pushes the expiry forward by SESSION_IDLE_SECONDS.
SESSION_COOKIE_AGE = env_int("SESSION_IDLE_SECONDS", 8 * 3600, minimum=60)
SESSION_SAVE_EVERY_REQUEST = True

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "staticfiles"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # whitenoise warns about a missing folder
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True
MEDIA_ROOT = VAR_DIR / "media"
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("MAX_REQUEST_BYTES", 20 * 1024 * 1024, minimum=1024)

# Security: production defaults whenever DEBUG is off and the site is not LOCAL_HTTP; each can
# be relaxed by its variable.
_HTTPS_ONLY = not DEBUG and not LOCAL_HTTP
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", _HTTPS_ONLY)
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]  # load balancers probe over plain HTTP
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", _HTTPS_ONLY)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", _HTTPS_ONLY)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000 if _HTTPS_ONLY else 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = _HTTPS_ONLY
SECURE_HSTS_PRELOAD = _HTTPS_ONLY
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
if env_bool("BEHIND_TLS_PROXY", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# Content-Security-Policy (django-csp): scripts only from our own origin, never inline (the
# pages embed data with json_script, which is not executed). Styles allow inline because
# plotly.js and htmx insert <style> elements of their own.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'", "'unsafe-inline'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}

# Secrets of connections configured in the page are encrypted with these Fernet keys; the
# first encrypts, all decrypt, so a key can be rotated (see docs/integrations.md).
FIELD_ENCRYPTION_KEYS = env_list("FIELD_ENCRYPTION_KEYS", [])

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "scoring.api.authentication.TokenAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["scoring.api.parsers.StrictJSONParser"],
    "DEFAULT_THROTTLE_RATES": {"ingest": env_str("INGEST_THROTTLE_RATE", "600/min")},
}
# API tokens (django-rest-knox): only a SHA-512 digest and a short prefix are stored; the token
# itself is shown once, when it is made. Clients still send `Authorization: Token <key>`.
# Tokens do not expire unless made with an expiry (`create_api_token --expires-days N`).
REST_KNOX = {"AUTH_HEADER_PREFIX": "Token", "TOKEN_TTL": None, "AUTO_REFRESH": False}
# Bad API tokens: after API_AUTH_FAILURE_LIMIT failures from one address within
# API_AUTH_FAILURE_WINDOW_SECONDS, that address gets 429 until the window has passed.
API_AUTH_FAILURE_LIMIT = env_int("API_AUTH_FAILURE_LIMIT", 20, minimum=1)
API_AUTH_FAILURE_WINDOW_SECONDS = env_int("API_AUTH_FAILURE_WINDOW_SECONDS", 600, minimum=1)
SPECTACULAR_SETTINGS = {
    "TITLE": "Lead scoring API",
    "VERSION": "1.0.0",
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    # Several models have a `status`; name the experiments' choice set so it is stable.
    "ENUM_NAME_OVERRIDES": {"ExperimentStatusEnum": "scoring.models.Experiment.Status"},
}

# Celery. The embedded default uses kombu's filesystem transport, so a real worker runs with
# no broker server; production points CELERY_BROKER_URL at Redis.
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "filesystem://")
BROKER_DIR = VAR_DIR / "broker"
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 15 * 60, minimum=1)
CELERY_TASK_TIME_LIMIT = CELERY_TASK_SOFT_TIME_LIMIT + 60
if CELERY_BROKER_URL.startswith("filesystem"):
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "processed_folder": str(BROKER_DIR / "processed"),
        "control_folder": str(BROKER_DIR / "control"),
        "store_processed": False,
    }
    # kombu's filesystem transport expects its folders to exist, in every process that sends
    # (a management command's `send_task` never finalizes the app, so no app hook would run).
    for _folder in ("queue", "processed", "control"):
        (BROKER_DIR / _folder).mkdir(parents=True, exist_ok=True)
else:
    # Longer than the longest task, or Redis redelivers a task that is still running.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": CELERY_TASK_TIME_LIMIT * 2}
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TIMEZONE = TIME_ZONE

# Scoring behaviour.
RESCORE_CHUNK_SIZE = env_int("RESCORE_CHUNK_SIZE", 20000, minimum=100)
# Fault recovery (docs/operations.md): a bulk run without progress for this long has its
# unfinished chunks sent again; a chunk sent this many times without finishing fails its run;
# any other queued job whose task has not started within JOB_RESEND_SECONDS is sent again.
RESCORE_STALL_SECONDS = env_int("RESCORE_STALL_SECONDS", 120, minimum=5)
RESCORE_CHUNK_MAX_ATTEMPTS = env_int("RESCORE_CHUNK_MAX_ATTEMPTS", 6, minimum=1)
JOB_RESEND_SECONDS = env_int("JOB_RESEND_SECONDS", 120, minimum=5)
SCORE_HISTORY_DELTA = env_int("SCORE_HISTORY_DELTA", 10, minimum=1)
QUALIFY_HYSTERESIS_POINTS = env_int("QUALIFY_HYSTERESIS_POINTS", 5, minimum=0)
# Acting on scores (docs/acting.md): routing SLA, the outbox relay's retries, webhooks.
ROUTING_SLA_HOURS = env_float("ROUTING_SLA_HOURS", 24.0)
# A rep's queue counts a lead "SLA due" this many hours before its SLA deadline (and after).
ROUTING_SLA_DUE_SOON_HOURS = env_float("ROUTING_SLA_DUE_SOON_HOURS", 4.0)
# CRMs (salesforce, hubspot) whose record owner follows each assignment; empty = none.
ROUTING_CRM_OWNER_WRITEBACK = env_list("ROUTING_CRM_OWNER_WRITEBACK", [])
OUTBOX_RETRY_BASE_SECONDS = env_float("OUTBOX_RETRY_BASE_SECONDS", 30.0)
OUTBOX_RETRY_MAX_SECONDS = env_float("OUTBOX_RETRY_MAX_SECONDS", 3600.0)
OUTBOX_GIVE_UP_HOURS = env_float("OUTBOX_GIVE_UP_HOURS", 24.0)
WEBHOOK_TIMEOUT_SECONDS = env_float("WEBHOOK_TIMEOUT_SECONDS", 10.0)
# Webhook URLs resolving to private, loopback or link-local addresses are refused unless this
# is on (SSRF); on by default only with DEBUG, for local receivers.
WEBHOOK_ALLOW_PRIVATE = env_bool("WEBHOOK_ALLOW_PRIVATE", DEBUG)
# Alert emails: EMAIL_URL (smtp://user:password@host:587, smtp+tls://..., consolemail://) or
# the standard EMAIL_* variables; links in them point at SITE_URL.
EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.smtp.EmailBackend")
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25, minimum=1)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", False)
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10, minimum=1)
globals().update(env_email("EMAIL_URL"))
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "leadscoring@localhost")
SITE_URL = env_str("SITE_URL", "http://127.0.0.1:8000")
REALTIME_RESCORE_DELAY_SECONDS = env_float("REALTIME_RESCORE_DELAY_SECONDS", 0.05)
# The sales team's weekly MQL capacity, drawn beside a threshold experiment's MQLs per week
# (docs/experiments.md); 0 = not set.
SALES_WEEKLY_MQL_CAPACITY = env_int("SALES_WEEKLY_MQL_CAPACITY", 0, minimum=0)
# The KPI cube is read, "as of" its refresh, while younger than this even after writes
# (scoring.kpis.cube); 0 = only while no write happened since the refresh.
KPI_CUBE_MAX_AGE_SECONDS = env_int("KPI_CUBE_MAX_AGE_SECONDS", 900, minimum=0)
# Opt-in: bulk scoring with a gradient-boosting model runs its trees as native code, built by
# this C compiler (scoring.ml.compiled; needs the `compiled` extra). Off by default so that the
# default install needs no compiler at run time: scikit-learn predicts, the same numbers.
ML_COMPILED_TREES = env_bool("ML_COMPILED_TREES", False)
ML_COMPILER = env_str("ML_COMPILER", "gcc")
# Training's leakage guard: a feature whose ROC AUC on its own (training leads) is above this
# is left out as a probable leak (known only after the outcome) unless `--allow`ed.
ML_LEAKAGE_AUC = env_float("ML_LEAKAGE_AUC", 0.95)
if not 0.5 < ML_LEAKAGE_AUC <= 1.0:
    raise ImproperlyConfigured(f"ML_LEAKAGE_AUC={ML_LEAKAGE_AUC} must be above 0.5 and at most 1.")
DEMO_PASSWORD = env_str("DEMO_PASSWORD", "demo")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
}

# plotly.js is served from the plotly Python package itself, so the exact build that the
# figures were made for is the one the browser runs, with nothing fetched from a CDN.
import plotly as _plotly  # noqa: E402

STATICFILES_DIRS.append(("vendor/plotly", str(Path(_plotly.__file__).parent / "package_data")))

from leadscoring.schedules import (  # noqa: E402, F401
    CELERY_BEAT_SCHEDULE,
    TIME_RESCORE_INTERVAL_SECONDS,
)
