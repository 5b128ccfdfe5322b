"""Text catalogs: language choice, fallbacks, overrides and placeholders."""

from __future__ import annotations

import pytest

from bot_kit.config import BillingConfig
from bot_kit.locales import core
from bot_kit.texts import CATALOG, error_text, get_text, pick_language


def test_every_core_text_exists_in_english_and_russian() -> None:
    assert set(core.TEXTS["en"]) == set(core.TEXTS["ru"])
    assert set(core.TEXTS["en"]) <= set(CATALOG["en"])


@pytest.mark.parametrize(("code", "expected"), [("ru", "ru"), ("ru-RU", "ru"), ("EN", "en"),
                                                ("de", "en"), (None, "en"), ("", "en")])
def test_pick_language(code: str | None, expected: str) -> None:
    assert pick_language(code) == expected


def test_pick_language_accepts_languages_only_the_host_translated() -> None:
    config = BillingConfig(texts={"de": {"paysupport": "Hilfe"}}, default_language="ru")

    assert pick_language("de", config) == "de"
    assert pick_language("fr", config) == "ru"
    assert get_text("paysupport", "de", config) == "Hilfe"
    # Missing in German: the configured default language, then English.
    assert get_text("trial_unavailable", "de", config) == core.TEXTS["ru"]["trial_unavailable"]


def test_placeholders_are_filled_and_missing_ones_kept() -> None:
    assert get_text("throttled", "en", seconds=3) == "Too many requests. Please try again in 3 s."
    assert "{seconds}" in get_text("throttled", "en")
    assert get_text("paywall", "en", name="x").endswith("Choose a pack to continue:")


def test_unknown_key_and_error_codes() -> None:
    assert get_text("no_such_key", "en") == "no_such_key"
    assert error_text("insufficient_funds", "ru") == core.TEXTS["ru"]["error_insufficient_funds"]
    assert error_text("something_new", "ru") == core.TEXTS["ru"]["error_generic"]
