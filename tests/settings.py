"""Settings for the test-suite.

SQLite by default; ``DATABASE_URL=postgres://user@host:port/name`` switches to PostgreSQL.
``BILLABLE_TEST_DB_NAME`` names the throw-away test database (parallel runs need distinct names).
"""

import os
from urllib.parse import unquote, urlparse

SECRET_KEY = "tests-not-secret"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
ALLOWED_HOSTS = ["*"]

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.admin",
    "billable",
    "bot_kit",
]

MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

ROOT_URLCONF = "tests.urls"

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


def database_from_url(url: str | None) -> dict:
    if not url:
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}
    parsed = urlparse(url)
    if parsed.scheme in ("sqlite", "sqlite3"):
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": parsed.path or ":memory:"}
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": unquote(parsed.path.lstrip("/")) or "postgres",
        "USER": unquote(parsed.username or "postgres"),
        "PASSWORD": unquote(parsed.password or ""),
        "HOST": parsed.hostname or "127.0.0.1",
        "PORT": str(parsed.port or 5432),
    }


DATABASES = {"default": database_from_url(os.environ.get("DATABASE_URL"))}
DATABASES["default"]["TEST"] = {"NAME": os.environ.get("BILLABLE_TEST_DB_NAME")}
if DATABASES["default"]["ENGINE"].endswith("sqlite3") and not DATABASES["default"]["TEST"]["NAME"]:
    DATABASES["default"]["TEST"] = {}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

BILLABLE_API_TOKEN = "test-token-0123456789abcdef"
BILLABLE_CURRENCY = "USD"

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STATIC_URL = "/static/"
