"""The routers of the growth features, in the order ``setup_billing`` includes them: gifts
first (it answers the payments of gift invoices before the purchase router), then ``/promo``
and ``/notifications``. Each handles only its own commands, deep links and callbacks."""

from __future__ import annotations

from aiogram import Router

from bot_kit.config import BillingConfig
from bot_kit.handlers import gifts, notifications, promo


def create_growth_routers(config: BillingConfig) -> list[Router]:
    """Fresh gift, promo and notification routers for ``config``."""
    return [gifts.create_router(config), promo.create_router(config),
            notifications.create_router(config)]


__all__ = ["create_growth_routers"]
