"""The shortcuts of the hot validators answer exactly as the general rules do."""

from __future__ import annotations

import pytest

from billable import validation
from billable.exceptions import InvalidInput, InvalidProductKey


def test_a_key_spelling_is_normalized_once_and_answered_from_memory() -> None:
    validation._KEYS.pop("  memo_key ", None)
    assert validation.normalize_product_key("  memo_key ") == "MEMO_KEY"
    assert validation._KEYS["  memo_key "] == "MEMO_KEY"
    assert validation.normalize_product_key("  memo_key ") == "MEMO_KEY"


@pytest.mark.parametrize("bad", ["", "   ", "x" * 51, "BAD\x00KEY", None, 5])
def test_refused_keys_are_never_remembered_and_stay_refused(bad: object) -> None:
    for _ in range(2):
        with pytest.raises(InvalidProductKey):
            validation.normalize_product_key(bad)
    assert not any(spelling == bad for spelling in validation._KEYS)


def test_the_key_memory_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(validation, "_KEYS", {})
    monkeypatch.setattr(validation, "_KEYS_KEPT", 3)
    for n in range(10):
        assert validation.normalize_product_key(f"k{n}") == f"K{n}"
    assert len(validation._KEYS) == 3


@pytest.mark.parametrize("value, expected", [(1, 1), (2**31 - 1, 2**31 - 1), ("7", 7), (" 8 ", 8)])
def test_integer_user_ids_pass(value: object, expected: int) -> None:
    assert validation.coerce_user_id(value) == expected


def test_ids_beyond_the_user_key_column_are_refused() -> None:
    """auth.User has a 32-bit key on PostgreSQL: a larger id must not reach the database
    (it raised ``DataError: integer out of range`` from ``consume_quota``)."""
    from django.contrib.auth import get_user_model
    from django.db import connection

    limit = validation._pk_limit(get_user_model())
    assert limit == (2**31 - 1 if connection.vendor == "postgresql" else 2**63 - 1)
    assert validation.coerce_user_id(limit) == limit
    assert validation.coerce_user_id(str(limit)) == limit
    with pytest.raises(InvalidInput):
        validation.coerce_user_id(limit + 1)


@pytest.mark.parametrize("value", [0, -1, 2**63, True, False, 1.0, None, "", "x"])
def test_non_ids_are_refused_by_the_shortcut_too(value: object) -> None:
    with pytest.raises(InvalidInput):
        validation.coerce_user_id(value)
