"""Invoice building: Telegram's limits and smallest currency units."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot_kit.payments.errors import NotPurchasable
from bot_kit.payments.invoices import from_minor_units, to_minor_units, truncate_text


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


@given(st.text(max_size=300), st.integers(2, 300))
def test_truncate_never_exceeds_limit_in_utf16_units(text: str, limit: int) -> None:
    result = truncate_text(text, limit)
    assert utf16_len(result) <= limit
    result.encode("utf-8")  # never half a surrogate pair


def test_truncate_keeps_short_text_and_marks_cut_text() -> None:
    assert truncate_text("Gold pack", 32) == "Gold pack"
    cut = truncate_text("🚀" * 40, 32)
    assert cut.endswith("…") and utf16_len(cut) <= 32 and cut.startswith("🚀")


@pytest.mark.parametrize("amount, currency, units", [
    ("50", "XTR", 50), ("4.99", "USD", 499), ("1000", "JPY", 1000), ("0.10", "eur", 10)])
def test_minor_units(amount: str, currency: str, units: int) -> None:
    assert to_minor_units(Decimal(amount), currency) == units
    assert from_minor_units(units, currency) == Decimal(amount)


def test_fractional_whole_unit_currency_is_refused() -> None:
    with pytest.raises(NotPurchasable):
        to_minor_units(Decimal("1.5"), "XTR")
