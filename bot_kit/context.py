"""``BillingContext``: everything billing-related about one update, injected under one key.

The identity middleware puts one frozen :class:`BillingContext` into aiogram's handler data
under ``billing`` (:data:`bot_kit.keys.BILLING`) for every update whose user is resolved. It is
a :class:`~bot_kit.facade.BillingFacade` (``balance``, ``check``, ``consume``, ``summary``,
``claim_trial``) that also carries the update's language, the config and the Telegram user id,
so a handler needs one parameter::

    async def predict(message: Message, billing: BillingContext) -> None:
        left = await billing.balance("PREDICTIONS")
        await message.answer(get_text("left", billing.lang, billing.config, n=left))

For compatibility the same values stay available under today's names: ``billing_user``,
``billing_user_id``, ``billing_lang``, ``billing_config`` (see :mod:`bot_kit.keys`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from bot_kit.facade import BillingFacade

if TYPE_CHECKING:
    from bot_kit.config import BillingConfig


@dataclass(frozen=True)
class BillingContext(BillingFacade):
    """The billing account of an update (``user``, ``user_id``), its language (``lang``), the
    kit's ``config`` and the Telegram user id; the ``BillingFacade`` methods bound to it."""

    lang: str = "en"
    config: BillingConfig | None = None
    telegram_user_id: int | None = None


__all__ = ["BillingContext"]
