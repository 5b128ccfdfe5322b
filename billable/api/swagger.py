"""Swagger UI for the billing API that works offline and without extra configuration.

Django Ninja's default docs page loads Swagger UI from a CDN unless ``"ninja"`` is in
``INSTALLED_APPS`` (and the host serves static files). Behind a firewall, or on a host that
never added ``"ninja"``, the page stayed blank. Here the API serves the Swagger UI files that
ship inside the ``django-ninja`` package itself, from ``docs/assets/<name>`` next to the docs
page: no CDN, no ``INSTALLED_APPS`` entry, no ``collectstatic``. The page refers to nothing
outside the API's own URLs.

The assets are public files of an open-source package (no API data), so they are served without
the token — a browser loading ``<script src>`` could not send one — but only while
``BILLABLE_SHOW_DOCS`` is on. The docs page itself keeps the token-or-staff guard.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ninja
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.urls import reverse
from django.utils.html import escape, json_script
from ninja import NinjaAPI
from ninja.openapi.docs import Swagger

from billable.conf import billable_settings

ASSET_DIR = Path(ninja.__file__).resolve().parent / "static" / "ninja"
#: The files the page needs, with their content types (nothing else is served).
ASSETS = {
    "swagger-ui.css": "text/css; charset=utf-8",
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui-init.js": "text/javascript; charset=utf-8",
    "favicon.svg": "image/svg+xml",
    "favicon.png": "image/png",
}
ASSET_ROUTE = "/docs/assets/{name}"
ASSET_URL_NAME = "docs-asset"
CACHE_SECONDS = 86400

PAGE = """<!DOCTYPE html>
<html>
<head>
  <meta charset="utf-8">
  <title>{title}</title>
  <link rel="stylesheet" type="text/css" href="{css}">
  <link rel="icon" href="{favicon}" type="image/svg+xml">
</head>
<body>
  {settings}
  <div id="swagger-ui"></div>
  <script src="{bundle}"></script>
  <script src="{init}"></script>
</body>
</html>
"""


class OfflineSwagger(Swagger):
    """Ninja's Swagger page, with its assets served by the API instead of a CDN."""

    def render_page(self, request: HttpRequest, api: NinjaAPI, **kwargs: Any) -> HttpResponse:
        def asset(name: str) -> str:
            return escape(reverse(f"{api.urls_namespace}:{ASSET_URL_NAME}",
                                  kwargs={**kwargs, "name": name}))

        settings = {**self.settings, "url": self.get_openapi_url(api, kwargs)}
        page = PAGE.format(
            title=escape(api.title), css=asset("swagger-ui.css"), favicon=asset("favicon.svg"),
            bundle=asset("swagger-ui-bundle.js"), init=asset("swagger-ui-init.js"),
            settings=json_script(settings, "swagger-settings"),
        )
        return HttpResponse(page)


def serve_asset(request: HttpRequest, name: str) -> FileResponse:
    """One of :data:`ASSETS`, read from the installed ``django-ninja`` package."""
    if not billable_settings.SHOW_DOCS or name not in ASSETS:
        raise Http404("Not found")
    response = FileResponse((ASSET_DIR / name).open("rb"), content_type=ASSETS[name])
    response["Cache-Control"] = f"public, max-age={CACHE_SECONDS}"
    return response


def add_docs_assets(api: NinjaAPI) -> None:
    """Serve :data:`ASSETS` under ``api`` (so they exist wherever ``api.urls`` is mounted)."""
    api.get(ASSET_ROUTE, auth=None, include_in_schema=False, url_name=ASSET_URL_NAME)(
        serve_asset)


__all__ = ["ASSETS", "OfflineSwagger", "add_docs_assets", "serve_asset"]
