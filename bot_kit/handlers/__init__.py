"""Command handlers of the core features, one Router per feature (fresh on every call)."""

from __future__ import annotations

from aiogram import Router

from bot_kit.config import BillingConfig
from bot_kit.handlers import balance, support, trials


def create_core_routers(config: BillingConfig) -> list[Router]:
    """``/paysupport`` first (it must always answer), then ``/trial`` and ``/balance``."""
    return [support.create_router(config), trials.create_router(config),
            balance.create_router(config)]


__all__ = ["create_core_routers"]
