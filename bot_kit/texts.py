"""Localized texts: gettext catalogs (``.po`` compiled with Babel) plus the host's overrides.

Every text has a key (``"paywall"``) and an English source text, the gettext ``msgid`` with the
key as ``msgctxt`` (``bot_kit/locales/core.py`` and ``payments.py``). Translations are
``<dir>/<lang>/LC_MESSAGES/bot_kit.po`` files; the kit ships ``en`` and ``ru`` in
``bot_kit/locales`` and a host adds languages (or overrides ours) with
``BillingConfig(locale_dirs=[...])``: adding a language is adding a catalog file. A ``.mo``
beside a ``.po`` is used when it is at least as new; otherwise the ``.po`` is compiled in memory
with Babel on first use (so a fresh checkout needs no build step).

Lookup order for ``get_text(key, lang)``: ``config.texts[lang]`` → the catalogs of ``lang`` →
``config.texts[default]`` → the catalogs of the default language → the English source → the key.
Placeholders use ``str.format`` names; a missing placeholder is left as ``{name}``. A blank
override or catalog entry counts as missing (Telegram refuses an empty message), and a text is
never longer than a Telegram message (``MESSAGE_LIMIT``, 4096 UTF-16 code units): a longer one
(a host's override, a long list filled in) is cut at a character boundary and ends with ``…``.

Which language a user gets is decided by ``user_language`` (see its docstring): the host's hook,
then aiogram's ``I18n`` context, then Telegram's ``language_code``, then the default language.
"""

from __future__ import annotations

import gettext
import inspect
import io
import logging
import os
import re
import string
from collections.abc import Iterable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot_kit.locales import core, growth, payments

if TYPE_CHECKING:
    from bot_kit.config import BillingConfig

logger = logging.getLogger("bot_kit.texts")

FALLBACK_LANGUAGE = "en"
#: Telegram's limit of a message's text, in UTF-16 code units (as Telegram counts).
MESSAGE_LIMIT = 4096
DOMAIN = "bot_kit"
#: The kit's own catalogs.
KIT_LOCALE_DIR = Path(__file__).resolve().parent / "locales"

#: Every text by key: the English source (gettext ``msgid``).
SOURCE: dict[str, str] = {**core.MESSAGES, **payments.MESSAGES, **growth.MESSAGES}
#: Texts with plural forms: key → (singular, plural) English msgids.
PLURALS: dict[str, tuple[str, str]] = dict(payments.PLURALS)
#: Earlier msgids of texts whose English source changed: a catalog entry translated against
#: one of them still counts (a host's ``.po`` written for an older kit keeps overriding).
PREVIOUS_MSGIDS: dict[str, tuple[str, ...]] = dict(payments.PREVIOUS_MSGIDS)


class _KeepMissing(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


class _NamesOnly(string.Formatter):
    """``str.format`` limited to plain names: ``{product.__class__}`` or ``{0}`` is refused."""

    def get_field(self, field_name: str, args: Any, kwargs: Any) -> Any:
        if not field_name.isidentifier():
            raise ValueError(f"not a plain placeholder name: {field_name!r}")
        return super().get_field(field_name, args, kwargs)


_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _fill(text: str, values: Mapping[str, Any]) -> str:
    """``text`` with its ``{name}`` placeholders filled; never raises.

    A host's override or catalog entry is the host's text, and a typo in it (a lone ``{``, a
    positional ``{0}``, an attribute ``{product.name}``) must not cost the user their answer:
    such a text is shown as typed, with only its plain ``{name}`` placeholders filled.
    """
    mapping = _KeepMissing(values)
    try:
        return _NamesOnly().vformat(text, (), mapping)
    except (ValueError, IndexError, KeyError, AttributeError, TypeError):
        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name is None:
                return match.group(0)[0]
            return str(mapping[name])

        return _PLACEHOLDER.sub(replace, text)


def normalize_language(language_code: str | None) -> str:
    """``"ru-RU"`` → ``"ru"``; empty → ``""``."""
    if not language_code:
        return ""
    return str(language_code).replace("_", "-").split("-")[0].strip().lower()


def _locale_dirs(config: BillingConfig | None) -> tuple[str, ...]:
    """The host's directories first (they win), then the kit's."""
    extra = tuple(str(Path(d)) for d in (config.locale_dirs if config is not None else ()))
    return (*extra, str(KIT_LOCALE_DIR))


def _catalog_file(directory: str, lang: str) -> Path | None:
    base = Path(directory) / lang / "LC_MESSAGES" / DOMAIN
    po, mo = base.with_suffix(".po"), base.with_suffix(".mo")
    if mo.exists() and (not po.exists() or mo.stat().st_mtime >= po.stat().st_mtime):
        return mo
    return po if po.exists() else None


@lru_cache(maxsize=256)
def _load(path: str, mtime: float) -> gettext.GNUTranslations:
    """One catalog file as ``GNUTranslations`` (a ``.po`` is compiled in memory with Babel)."""
    if path.endswith(".mo"):
        with open(path, "rb") as handle:
            return gettext.GNUTranslations(handle)
    # optional dependency: Babel (the ``bot`` extra) is loaded only to compile a ``.po``
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po

    with open(path, "rb") as handle:
        catalog = read_po(handle, domain=DOMAIN)
    buffer = io.BytesIO()
    write_mo(buffer, catalog)
    buffer.seek(0)
    return gettext.GNUTranslations(buffer)


def translations(lang: str, config: BillingConfig | None = None) -> gettext.NullTranslations | None:
    """The compiled catalogs of ``lang`` (host's first, the kit's as fallback), or ``None``."""
    return _translations(normalize_language(lang), _locale_dirs(config))


@lru_cache(maxsize=256)
def _translations(lang: str, dirs: tuple[str, ...]) -> gettext.NullTranslations | None:
    if not lang:
        return None
    chain: gettext.NullTranslations | None = None
    for directory in dirs:
        found = _catalog_file(directory, lang)
        if found is None:
            continue
        try:
            loaded = _load(str(found), found.stat().st_mtime)
        except Exception:
            logger.exception("could not load the text catalog %s", found)
            continue
        if chain is None:
            chain = _Chain(loaded)
        else:
            chain.add_fallback(_Chain(loaded))
    return chain


class _Chain(gettext.NullTranslations):
    """A ``GNUTranslations`` that can be chained without mutating the cached object."""

    def __init__(self, inner: gettext.GNUTranslations) -> None:
        super().__init__()
        self._inner = inner
        self._fallback: gettext.NullTranslations | None = None

    def pgettext(self, context: str, message: str) -> str:
        return self.find(context, (message,)) or message

    def find(self, context: str, messages: tuple[str, ...]) -> str | None:
        """The first translation of ``context`` under any of ``messages`` (msgids), catalog
        by catalog (a host catalog's entry for an older msgid beats the kit's for the current
        one), or ``None``."""
        catalog = self._inner._catalog  # type: ignore[attr-defined]
        for message in messages:
            found = catalog.get(f"{context}\x04{message}")
            if found:
                return str(found)
        if isinstance(self._fallback, _Chain):
            return self._fallback.find(context, messages)
        return None

    def npgettext(self, context: str, msgid1: str, msgid2: str, n: int) -> str:
        index = self._inner.plural(n)  # type: ignore[attr-defined]
        found = self._inner._catalog.get(  # type: ignore[attr-defined]
            (f"{context}\x04{msgid1}", index))
        if found:
            return str(found)
        if self._fallback is not None:
            return self._fallback.npgettext(context, msgid1, msgid2, n)
        return msgid1 if n == 1 else msgid2


def _catalog_text(key: str, lang: str, config: BillingConfig | None) -> str | None:
    source = SOURCE.get(key)
    if source is None:
        return None
    found = translations(lang, config)
    text = None
    if isinstance(found, _Chain):
        text = found.find(key, (source, *PREVIOUS_MSGIDS.get(key, ())))
    if lang == FALLBACK_LANGUAGE:
        return text or source
    return text if text != source else None


def available_languages(config: BillingConfig | None = None) -> set[str]:
    """Languages with a catalog in any locale directory, or texts in ``config.texts``."""
    langs = set(_languages_in(_locale_dirs(config)))
    if config is not None:
        langs.update(normalize_language(code) for code in config.texts)
    return langs


@lru_cache(maxsize=64)
def _languages_in(dirs: tuple[str, ...]) -> frozenset[str]:
    langs = {FALLBACK_LANGUAGE}
    for directory in dirs:
        root = Path(directory)
        if root.is_dir():
            langs.update(entry.name for entry in root.iterdir()
                         if _catalog_file(str(root), entry.name) is not None)
    return frozenset(langs)


def reload_catalogs() -> None:
    """Forget the loaded catalogs (after adding or editing ``.po`` files at run time)."""
    _load.cache_clear()
    _translations.cache_clear()
    _languages_in.cache_clear()


def pick_language(language_code: str | None, config: BillingConfig | None = None) -> str:
    """The language to talk to a user in: theirs when we have texts for it, else the default."""
    lang = normalize_language(language_code)
    if lang and lang in available_languages(config):
        return lang
    return normalize_language(config.default_language) if config is not None \
        else FALLBACK_LANGUAGE


def _lookup(key: str, lang: str, config: BillingConfig | None) -> str:
    overrides: Mapping[str, Mapping[str, str]] = config.texts if config is not None else {}
    default = normalize_language(config.default_language) if config is not None \
        else FALLBACK_LANGUAGE
    for language in dict.fromkeys((lang, default)):
        text = overrides.get(language, {}).get(key)
        if text is not None and str(text).strip():
            return str(text)
        text = _catalog_text(key, language, config)
        if text is not None and text.strip():
            return text
    return _catalog_text(key, FALLBACK_LANGUAGE, config) or SOURCE.get(key, key)


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def fit_text(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """``text`` when it fits ``limit`` UTF-16 code units, else its longest prefix that fits
    with ``…`` appended; cut between characters (never inside a surrogate pair)."""
    if _utf16_len(text) <= limit:
        return text
    used, kept = 1, 0  # the ellipsis is one unit
    for char in text:
        size = 2 if ord(char) > 0xFFFF else 1
        if used + size > limit:
            break
        used += size
        kept += 1
    return text[:kept].rstrip() + "…"


def split_message(text: str, limit: int = MESSAGE_LIMIT) -> list[str]:
    """``text`` as messages of at most ``limit`` UTF-16 code units, split between lines (a
    single longer line is cut by ``fit_text``); blank parts are dropped."""
    parts: list[str] = []
    current: list[str] = []
    size = 0
    for line in text.split("\n"):
        line = fit_text(line, limit)
        length = _utf16_len(line)
        if current and size + 1 + length > limit:
            parts.append("\n".join(current))
            current, size = [], 0
        size += length + (1 if current else 0)
        current.append(line)
    parts.append("\n".join(current))
    return [part for part in parts if part.strip()]


def get_text(key: str, lang: str | None, config: BillingConfig | None = None, **fmt: Any) -> str:
    """The text ``key`` in ``lang`` (see the module docstring for the fallback order), never
    blank when the English source is not, and never longer than ``MESSAGE_LIMIT``."""
    text = _lookup(key, normalize_language(lang) or FALLBACK_LANGUAGE, config)
    if fmt:
        filled = _fill(text, fmt)
        # a host text that filled to nothing ("{products}" with none): the kit's own sentence
        text = filled if filled.strip() or key not in SOURCE else _fill(SOURCE[key], fmt)
    return fit_text(text)


def get_plural(key: str, n: int, lang: str | None, config: BillingConfig | None = None,
               **fmt: Any) -> str:
    """The plural text ``key`` for the number ``n`` (gettext plural forms of ``lang``)."""
    singular, plural = PLURALS[key]
    lang = normalize_language(lang) or FALLBACK_LANGUAGE
    default = normalize_language(config.default_language) if config is not None \
        else FALLBACK_LANGUAGE
    text = singular if n == 1 else plural
    for language in dict.fromkeys((lang, default, FALLBACK_LANGUAGE)):
        found = translations(language, config)
        if found is not None:
            text = found.npgettext(key, singular, plural, n)
            if language == FALLBACK_LANGUAGE or text not in (singular, plural):
                break
    return _fill(text, {"n": n, **fmt})


def error_text(code: str, lang: str | None, config: BillingConfig | None = None) -> str:
    """The localized text for a billable error ``code`` (generic text when unknown)."""
    text = get_text(f"error_{code}", lang, config)
    return text if text != f"error_{code}" else get_text("error_generic", lang, config)


def period_text(seconds: int, lang: str | None, config: BillingConfig | None = None) -> str:
    """``"30 days"`` / ``"30 дней"`` for a subscription period in seconds."""
    if seconds % 86400 == 0:
        return get_plural("period_days", seconds // 86400, lang, config)
    if seconds % 60 == 0:
        return get_plural("period_minutes", seconds // 60, lang, config)
    return get_plural("period_seconds", seconds, lang, config)


def host_locale() -> str | None:
    """The locale of aiogram's ``I18n`` context, when the host runs ``I18nMiddleware``."""
    try:
        from aiogram.utils.i18n import I18n  # optional dependency: it needs Babel
    except ImportError:  # pragma: no cover - Babel missing
        return None
    current = I18n.get_current(no_error=True)
    if current is None:
        return None
    return str(current.current_locale or "") or None


async def user_language(config: BillingConfig, tg_user: Any = None,
                        injected: str | None = None) -> str:
    """The language to answer ``tg_user`` in, first match wins:

    1. ``config.language_getter(tg_user)`` — the host's hook for a language the user picked
       in the bot (sync or async; ``None`` means "no preference");
    2. the locale of aiogram's ``I18n`` context (the host uses ``I18nMiddleware``);
    3. ``injected`` — what the identity middleware picked from ``language_code``;
    4. the user's Telegram ``language_code``; 5. ``config.default_language``.

    A language without texts falls through to the default language.
    """
    getter = config.language_getter
    if getter is not None and tg_user is not None:
        try:
            chosen = getter(tg_user)
            if inspect.isawaitable(chosen):
                chosen = await chosen
        except Exception:
            logger.exception("language_getter failed; using the next source")
            chosen = None
        if chosen:
            return pick_language(str(chosen), config)
    locale = host_locale()
    if locale:
        return pick_language(locale, config)
    if injected:
        return injected
    return pick_language(getattr(tg_user, "language_code", None), config)


def compile_catalogs(directories: Iterable[str | os.PathLike[str]] = (KIT_LOCALE_DIR,)
                     ) -> list[Path]:
    """Write a ``.mo`` beside every ``bot_kit.po`` under ``directories``; returns them."""
    # optional dependency: Babel (the ``bot`` extra) is loaded only to compile a ``.po``
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po

    written = []
    for directory in directories:
        for po in sorted(Path(directory).glob(f"*/LC_MESSAGES/{DOMAIN}.po")):
            with open(po, "rb") as handle:
                catalog = read_po(handle, domain=DOMAIN)
            mo = po.with_suffix(".mo")
            with open(mo, "wb") as handle:
                write_mo(handle, catalog)
            written.append(mo)
    return written


__all__ = [
    "MESSAGE_LIMIT",
    "PREVIOUS_MSGIDS",
    "SOURCE",
    "available_languages",
    "compile_catalogs",
    "error_text",
    "fit_text",
    "get_plural",
    "get_text",
    "host_locale",
    "normalize_language",
    "period_text",
    "pick_language",
    "reload_catalogs",
    "split_message",
    "translations",
    "user_language",
]
