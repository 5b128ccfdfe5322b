"""The Swagger UI page works offline: every file it loads is served by the API itself."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import ninja
import pytest
from django.conf import settings as django_settings

from billable.api.swagger import ASSETS

pytestmark = pytest.mark.django_db

AUTH = {"Authorization": "Bearer test-token-0123456789abcdef"}
NINJA_STATIC = Path(ninja.__file__).resolve().parent / "static" / "ninja"


def body(response: Any) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


@pytest.mark.parametrize("urlconf", ["tests.urls", "tests.examples.urls_api_mount"])
def test_the_docs_page_loads_every_file_from_the_api_without_ninja_installed(
        client: Any, settings: Any, urlconf: str) -> None:
    assert "ninja" not in django_settings.INSTALLED_APPS  # Ninja's own page would use a CDN
    settings.ROOT_URLCONF = urlconf
    page = client.get("/api/v1/billing/docs/", headers=AUTH)
    html = page.content.decode()

    urls = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert page.status_code == 200 and len(urls) == 4
    assert all(url.startswith("/api/v1/billing/docs/assets/") for url in urls), urls
    assert "//" not in "".join(urls) and "cdn" not in html.lower()
    for url in urls:  # fetched without the token, as a browser loading <script src> does
        asset = client.get(url)
        name = url.rsplit("/", 1)[1]
        assert asset.status_code == 200, url
        assert asset["Content-Type"] == ASSETS[name]
        assert body(asset) == (NINJA_STATIC / name).read_bytes()
    settings_json = re.search(r'id="swagger-settings" type="application/json">(.*?)</script>',
                              html)
    assert settings_json and '"url": "/api/v1/billing/openapi.json"' in settings_json.group(1)
    assert client.get("/api/v1/billing/openapi.json", headers=AUTH).status_code == 200


def test_the_bundle_is_swagger_ui_and_the_init_script_starts_it(client: Any) -> None:
    bundle = body(client.get("/api/v1/billing/docs/assets/swagger-ui-bundle.js"))
    init = body(client.get("/api/v1/billing/docs/assets/swagger-ui-init.js")).decode()

    assert b"SwaggerUIBundle" in bundle and len(bundle) > 500_000
    assert 'getElementById("swagger-settings")' in init and "SwaggerUIBundle(" in init


@pytest.mark.parametrize("name", ["redoc.standalone.js", "swagger-ui.css.map", "..%2Fswagger.html",
                                  "..%2F..%2F__init__.py", "favicon.ico"])
def test_only_the_listed_assets_are_served(client: Any, name: str) -> None:
    assert client.get(f"/api/v1/billing/docs/assets/{name}").status_code == 404


def test_assets_follow_the_docs_switch_and_stay_out_of_the_schema(
        client: Any, settings: Any) -> None:
    schema = client.get("/api/v1/billing/openapi.json", headers=AUTH).json()
    assert not [path for path in schema["paths"] if "/docs" in path]

    settings.BILLABLE_SHOW_DOCS = False
    for name in ASSETS:
        assert client.get(f"/api/v1/billing/docs/assets/{name}").status_code == 404
