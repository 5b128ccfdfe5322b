"""``HasQuota``: a filter that matches only when the user can afford the handler.

Unlike ``@requires_quota`` it charges nothing: it injects the ``Balance`` as
``billing_balance`` and leaves spending to the handler (``await billing.consume(...)``). When
the balance is too low the filter does not match and aiogram tries the next handler, so a host
typically registers a fallback that calls ``bot_kit.paywall.send_paywall``.
"""

from __future__ import annotations

import logging
from typing import Any

from aiogram.filters import BaseFilter
from aiogram.types import TelegramObject

from billable.exceptions import BillableError
from bot_kit import billing
from bot_kit.decorators import QuotaRequirement
from bot_kit.facade import Balance
from bot_kit.keys import BILLING_BALANCE

logger = logging.getLogger("bot_kit.filters")


class HasQuota(BaseFilter):
    """Match when the user holds at least ``amount`` spendable units of ``product_key``."""

    def __init__(self, product_key: str, amount: int = 1) -> None:
        self.requirement = QuotaRequirement(product_key, amount)

    async def __call__(self, event: TelegramObject,
                       billing_user_id: int | None = None) -> bool | dict[str, Any]:
        if billing_user_id is None:
            return False
        key = self.requirement.product_key
        try:
            result = await billing.acheck(billing_user_id, key)
        except BillableError as exc:
            logger.warning("HasQuota(%s) check failed: %s", key, exc)
            return False
        remaining = int(result.get("remaining") or 0)
        if not result.get("can_use") or remaining < self.requirement.amount:
            return False
        return {BILLING_BALANCE: Balance(product_key=key, remaining=remaining, can_use=True)}


__all__ = ["HasQuota"]
