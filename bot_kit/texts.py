"""Localized texts: the kit's catalogs merged with the host's overrides.

Lookup order for ``get_text(key, lang)``: ``config.texts[lang]`` → catalog ``lang`` →
``config.texts[default]`` → catalog ``default`` → catalog ``en`` → the key itself. Placeholders
use ``str.format`` names; a missing placeholder is left as ``{name}`` instead of failing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from bot_kit.locales import core, growth, payments

if TYPE_CHECKING:
    from bot_kit.config import BillingConfig

FALLBACK_LANGUAGE = "en"


def _merge(*catalogs: Mapping[str, Mapping[str, str]]) -> dict[str, dict[str, str]]:
    merged: dict[str, dict[str, str]] = {}
    for catalog in catalogs:
        for lang, texts in catalog.items():
            merged.setdefault(lang, {}).update(texts)
    return merged


#: All built-in texts by language.
CATALOG: dict[str, dict[str, str]] = _merge(core.TEXTS, payments.TEXTS, growth.TEXTS)


class _KeepMissing(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def normalize_language(language_code: str | None) -> str:
    """``"ru-RU"`` → ``"ru"``; empty → ``""``."""
    if not language_code:
        return ""
    return language_code.replace("_", "-").split("-")[0].strip().lower()


def pick_language(language_code: str | None, config: BillingConfig | None = None) -> str:
    """The language to talk to a user in: theirs when we have texts for it, else the default."""
    lang = normalize_language(language_code)
    overrides = config.texts if config is not None else {}
    if lang and (lang in CATALOG or lang in overrides):
        return lang
    return config.default_language if config is not None else FALLBACK_LANGUAGE


def _lookup(key: str, lang: str, config: BillingConfig | None) -> str:
    overrides: Mapping[str, Mapping[str, str]] = config.texts if config is not None else {}
    default = config.default_language if config is not None else FALLBACK_LANGUAGE
    for source, language in ((overrides, lang), (CATALOG, lang), (overrides, default),
                             (CATALOG, default), (CATALOG, FALLBACK_LANGUAGE)):
        text = source.get(language, {}).get(key)
        if text is not None:
            return text
    return key


def get_text(key: str, lang: str | None, config: BillingConfig | None = None, **fmt: Any) -> str:
    """The text ``key`` in ``lang`` (see the module docstring for the fallback order)."""
    text = _lookup(key, normalize_language(lang) or FALLBACK_LANGUAGE, config)
    if not fmt:
        return text
    return text.format_map(_KeepMissing(fmt))


def error_text(code: str, lang: str | None, config: BillingConfig | None = None) -> str:
    """The localized text for a billable error ``code`` (generic text when unknown)."""
    text = get_text(f"error_{code}", lang, config)
    return text if text != f"error_{code}" else get_text("error_generic", lang, config)


__all__ = ["CATALOG", "error_text", "get_text", "normalize_language", "pick_language"]
