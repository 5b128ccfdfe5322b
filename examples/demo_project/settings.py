"""Demo project settings: SQLite by default, ``DATABASE_URL`` for PostgreSQL."""

import os
from pathlib import Path
from urllib.parse import unquote, urlparse

BASE_DIR = Path(__file__).resolve().parent.parent.parent
DATA_DIR = Path(os.environ.get("BILLABLE_DEMO_DIR", BASE_DIR / ".demo"))

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "demo-only-not-secret")
# Off unless asked for: with DEBUG on, Django answers some refused requests with a traceback.
DEBUG = os.environ.get("DJANGO_DEBUG", "0") == "1"
# Comma-separated Host names the demo answers; host.docker.internal is how n8n in Docker
# reaches a demo started with ``--host 0.0.0.0``.
ALLOWED_HOSTS = [host.strip() for host in os.environ.get(
    "DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,host.docker.internal").split(",") if host.strip()]
USE_TZ = True
TIME_ZONE = "UTC"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "billable",
    "bot_kit",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

ROOT_URLCONF = "examples.demo_project.urls"
ASGI_APPLICATION = "examples.demo_project.asgi.application"
WSGI_APPLICATION = "examples.demo_project.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]


#: SQLite under concurrent writers (ASGI runs requests in several threads): every transaction
#: takes the write lock when it begins (``BEGIN IMMEDIATE``) and waits up to 20 s for it instead
#: of failing with "database is locked" mid-transaction; WAL lets reads go on during a write.
SQLITE_OPTIONS = {
    "transaction_mode": "IMMEDIATE",
    "timeout": 20,
    "init_command": "PRAGMA journal_mode=WAL;",
}


def sqlite_database(path: str) -> dict:
    """A Django DATABASES entry for the SQLite file at ``path``, with :data:`SQLITE_OPTIONS`."""
    return {"ENGINE": "django.db.backends.sqlite3", "NAME": path,
            "OPTIONS": dict(SQLITE_OPTIONS)}


def database_from_url(url: str | None) -> dict:
    """A Django DATABASES entry from ``DATABASE_URL`` (SQLite file in .demo/ when unset)."""
    if not url:
        DATA_DIR.mkdir(parents=True, exist_ok=True)
        return sqlite_database(str(DATA_DIR / "demo.sqlite3"))
    parsed = urlparse(url)
    if parsed.scheme in ("sqlite", "sqlite3"):
        return sqlite_database(parsed.path)
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": unquote(parsed.path.lstrip("/")) or "postgres",
        "USER": unquote(parsed.username or "postgres"),
        "PASSWORD": unquote(parsed.password or ""),
        "HOST": parsed.hostname or "127.0.0.1",
        "PORT": str(parsed.port or 5432),
        # A connection pool (psycopg-pool, Django >= 5.1): under ASGI every request runs in a
        # fresh thread, so persistent per-thread connections (CONN_MAX_AGE) would pile up.
        "CONN_MAX_AGE": 0,
        "OPTIONS": {"pool": {"min_size": 1, "max_size": 8, "timeout": 10}},
    }


DATABASES = {"default": database_from_url(os.environ.get("DATABASE_URL"))}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
STATIC_URL = "/static/"

BILLABLE_API_TOKEN = os.environ.get("BILLABLE_API_TOKEN", "demo-token-change-me-0123456789")
BILLABLE_CURRENCY = os.environ.get("BILLABLE_CURRENCY", "USD")

# Long-lived bot processes (runbot) recycle broken connections around each update; with health
# checks a reused connection is also pinged once per update (docs/delivery.md).
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
if os.environ.get("DATABASE_PGBOUNCER") == "1":  # PgBouncer in transaction mode (docs/scaling.md)
    DATABASES["default"]["DISABLE_SERVER_SIDE_CURSORS"] = True

# bot_kit: the Dispatcher of `manage.py runbot`, and the Redis of the bot (FSM, throttling).
BOT_KIT_DISPATCHER = "examples.demo_bot.bot.build_dispatcher"
BOT_KIT_REDIS_URL = os.environ.get("REDIS_URL") or None
