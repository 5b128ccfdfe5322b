"""URLs of the browser test: the suite's own plus a one-time login link (Chromium's command
line cannot fill in the login form)."""

from __future__ import annotations

import secrets
from pathlib import Path

import django.contrib.admin
from django.contrib.auth import get_user_model, login
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import path

from tests.urls import urlpatterns as suite_urlpatterns

#: The admin's own CSS and images: the live server serves ``STATIC_ROOT`` at ``STATIC_URL``.
ADMIN_STATIC = Path(django.contrib.admin.__file__).parent / "static"
#: One-time keys → user primary keys; each key logs in once.
_KEYS: dict[str, int] = {}


def login_link(user_pk: int, next_path: str) -> str:
    """A path that logs ``user_pk`` in once, then redirects to ``next_path``."""
    from urllib.parse import quote

    key = secrets.token_urlsafe(16)
    _KEYS[key] = user_pk
    return f"/test-login/{key}/?next={quote(next_path, safe='')}"


def login_once(request: HttpRequest, key: str) -> HttpResponse:
    user_pk = _KEYS.pop(key, None)
    target = request.GET.get("next", "/")
    if user_pk is None or not target.startswith("/") or target.startswith("//"):
        raise Http404("unknown login key")
    login(request, get_user_model().objects.get(pk=user_pk),
          backend="django.contrib.auth.backends.ModelBackend")
    return HttpResponseRedirect(target)


urlpatterns = [
    path("test-login/<str:key>/", login_once),
    *suite_urlpatterns,
]
