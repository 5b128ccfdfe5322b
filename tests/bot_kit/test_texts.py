"""Text catalogs: gettext .po files, language choice, fallbacks, overrides and placeholders."""

from __future__ import annotations

import re
import string
from pathlib import Path

import pytest
from babel.messages.pofile import read_po

from bot_kit.config import BillingConfig
from bot_kit.texts import (
    KIT_LOCALE_DIR,
    PLURALS,
    SOURCE,
    available_languages,
    compile_catalogs,
    error_text,
    get_plural,
    get_text,
    period_text,
    pick_language,
    reload_catalogs,
)

TEST_LOCALES = str(Path(__file__).resolve().parent / "locale")
LATIN = re.compile(r"[A-Za-z]")


def _po(lang: str) -> dict[tuple[str, str], object]:
    with open(KIT_LOCALE_DIR / lang / "LC_MESSAGES" / "bot_kit.po", "rb") as handle:
        catalog = read_po(handle)
    return {(m.context or "", m.id if isinstance(m.id, str) else m.id[0]): m.string
            for m in catalog if m.id}


def _fields(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def test_russian_catalog_translates_every_text_with_the_same_placeholders() -> None:
    entries = _po("ru")
    for key, english in SOURCE.items():
        translated = entries.get((key, english))
        assert isinstance(translated, str) and translated, key
        assert _fields(translated) == _fields(english), key
    for key, (singular, _) in PLURALS.items():
        forms = entries[(key, singular)]
        assert isinstance(forms, tuple) and len(forms) == 3 and all(forms), key


def test_english_catalog_lists_every_text() -> None:
    entries = _po("en")
    assert {(key, text) for key, text in SOURCE.items()} <= set(entries)


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
    assert get_text("trial_unavailable", "de", config) == "Сейчас пробный период недоступен."


def test_placeholders_are_filled_and_missing_ones_kept() -> None:
    assert get_text("throttled", "en", seconds=3) == "Too many requests. Please try again in 3 s."
    assert "{seconds}" in get_text("throttled", "en")
    assert get_text("paywall", "en", name="x").endswith("Choose a pack to continue:")
    assert get_text("throttled", "ru", seconds=3) == (
        "Слишком много запросов. Попробуйте через 3 с.")


def test_unknown_key_and_error_codes() -> None:
    assert get_text("no_such_key", "en") == "no_such_key"
    assert error_text("insufficient_funds", "ru") == "Недостаточно средств на балансе."
    assert error_text("something_new", "ru") == "Что-то пошло не так. Попробуйте позже."


@pytest.mark.parametrize(("n", "ru", "en"), [(1, "1 день", "1 day"), (3, "3 дня", "3 days"),
                                             (5, "5 дней", "5 days"), (21, "21 день", "21 days"),
                                             (30, "30 дней", "30 days")])
def test_plural_forms_follow_each_language(n: int, ru: str, en: str) -> None:
    assert get_plural("period_days", n, "ru") == ru
    assert get_plural("period_days", n, "en") == en


def test_period_text_uses_minutes_for_test_environment_periods() -> None:
    assert period_text(2592000, "ru") == "30 дней"
    assert period_text(300, "ru") == "5 минут"
    assert period_text(300, "en") == "5 minutes"


def test_a_third_language_is_added_by_a_catalog_file() -> None:
    """tests/bot_kit/locale/eo/LC_MESSAGES/bot_kit.po is the only thing that adds Esperanto."""
    config = BillingConfig(locale_dirs=(TEST_LOCALES,))

    assert "eo" not in available_languages()
    assert "eo" in available_languages(config)
    assert pick_language("eo", config) == "eo"
    assert pick_language("eo") == "en"
    assert get_text("balance_header", "eo", config) == "Via saldo:"
    assert get_plural("period_days", 30, "eo", config) == "30 tagoj"
    # Not translated in the test catalog: the default language's text.
    assert get_text("buy_empty", "eo", config) == SOURCE["buy_empty"]


def test_host_catalog_overrides_the_kit_and_mo_files_are_used(tmp_path: Path) -> None:
    po = tmp_path / "ru" / "LC_MESSAGES" / "bot_kit.po"
    po.parent.mkdir(parents=True)
    po.write_text('msgid ""\nmsgstr ""\n"Content-Type: text/plain; charset=utf-8\\n"\n\n'
                  'msgctxt "balance_header"\nmsgid "Your balance:"\nmsgstr "Кошелёк:"\n',
                  encoding="utf-8")
    config = BillingConfig(locale_dirs=(str(tmp_path),))
    try:
        assert get_text("balance_header", "ru", config) == "Кошелёк:"
        assert get_text("buy_catalog", "ru", config) == "Выберите, что купить:"  # the kit's
        [mo] = compile_catalogs([tmp_path])
        assert mo.exists() and mo.suffix == ".mo"
        reload_catalogs()
        assert get_text("balance_header", "ru", config) == "Кошелёк:"
    finally:
        reload_catalogs()


OLD_REJECTED = ("We could not apply this payment: {reason} It is being refunded automatically. "
                "Receipt id: {charge_id}")


@pytest.mark.parametrize(("lang", "expected"), [
    ("en", "We could not apply this payment. This invoice was issued by another bot. The "
           "payment is being refunded automatically. Receipt id: ch-1"),
    ("ru", "Не удалось зачесть этот платёж. Этот счёт выставлен другим ботом. Платёж будет "
           "возвращён автоматически. Номер чека: ch-1"),
])
def test_payment_rejected_reads_as_sentences(lang: str, expected: str) -> None:
    reason = get_text("precheckout_wrong_bot", lang)
    assert get_text("payment_rejected", lang, reason=reason, charge_id="ch-1") == expected


@pytest.mark.parametrize("lang", ["en", "ru"])
def test_host_catalog_written_for_the_old_payment_rejected_still_overrides(
        tmp_path: Path, lang: str) -> None:
    po = tmp_path / lang / "LC_MESSAGES" / "bot_kit.po"
    po.parent.mkdir(parents=True)
    po.write_text('msgid ""\nmsgstr ""\n"Content-Type: text/plain; charset=utf-8\\n"\n\n'
                  f'msgctxt "payment_rejected"\nmsgid "{OLD_REJECTED}"\n'
                  'msgstr "Host: {reason} ({charge_id})"\n', encoding="utf-8")
    config = BillingConfig(locale_dirs=(str(tmp_path),))
    try:
        assert get_text("payment_rejected", lang, config, reason="Why.",
                        charge_id="ch-1") == "Host: Why. (ch-1)"
    finally:
        reload_catalogs()


def test_config_override_of_payment_rejected_is_used_as_written() -> None:
    config = BillingConfig(texts={"ru": {"payment_rejected": "Отказ — {reason} [{charge_id}]"}})
    assert get_text("payment_rejected", "ru", config, reason="Причина.",
                    charge_id="ch-1") == "Отказ — Причина. [ch-1]"


def test_no_russian_text_contains_latin_words_except_commands() -> None:
    for key in SOURCE:
        text = get_text(key, "ru")
        text = re.sub(r"/\w+|\{\w+\}|[⭐—]", "", text)
        assert not LATIN.search(text), (key, text)
