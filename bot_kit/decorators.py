"""``@requires_quota``: declare that a handler spends quota (an aiogram handler flag)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from aiogram.dispatcher.flags import extract_flags_from_object

from bot_kit.keys import QUOTA_FLAG

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class QuotaRequirement:
    """``amount`` units of ``product_key`` are charged when the handler succeeds."""

    product_key: str
    amount: int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.product_key, str) or not self.product_key.strip():
            raise ValueError("requires_quota needs a non-empty product key")
        if isinstance(self.amount, bool) or not isinstance(self.amount, int) or self.amount < 1:
            raise ValueError("requires_quota amount must be a positive integer")
        object.__setattr__(self, "product_key", self.product_key.strip().upper())

    @classmethod
    def coerce(cls, value: Any) -> QuotaRequirement | None:
        """Accept the flag as set by the decorator, a key string, or a mapping."""
        if value is None or isinstance(value, cls):
            return value
        if isinstance(value, str):
            return cls(value)
        if isinstance(value, Mapping):
            return cls(str(value.get("product_key") or value.get("key") or ""),
                       int(value.get("amount", 1)))
        raise ValueError(f"Unsupported {QUOTA_FLAG} flag value: {value!r}")


def requires_quota(product_key: str, amount: int = 1) -> Callable[[F], F]:
    """Gate a handler on quota; place it **under** the router decorator::

        @router.message(Command("predict"))
        @requires_quota("PREDICTIONS")
        async def predict(message: Message) -> None: ...

    The quota middleware holds ``amount`` units before the handler runs, charges them when it
    returns, releases them when it raises, and shows the paywall when the balance is too low.
    """
    requirement = QuotaRequirement(product_key, amount)

    def decorate(func: F) -> F:
        func.aiogram_flag = {  # type: ignore[attr-defined]
            **extract_flags_from_object(func),
            QUOTA_FLAG: requirement,
        }
        return func

    return decorate


__all__ = ["QuotaRequirement", "requires_quota"]
