"""bot_kit — aiogram 3 integration for billable.

Exports are loaded lazily, so ``import bot_kit`` (e.g. from ``INSTALLED_APPS``) never touches
Django models before the app registry is ready.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bot_kit.config import BillingConfig, Throttle
    from bot_kit.context import BillingContext
    from bot_kit.decorators import QuotaRequirement, requires_quota
    from bot_kit.facade import Balance, BillingFacade
    from bot_kit.filters import HasQuota
    from bot_kit.paywall import send_paywall
    from bot_kit.setup import setup_billing
    from bot_kit.texts import get_text
    from bot_kit.throttling import MemoryThrottle, RedisThrottle

_EXPORTS = {
    "Balance": "bot_kit.facade",
    "BillingConfig": "bot_kit.config",
    "BillingContext": "bot_kit.context",
    "BillingFacade": "bot_kit.facade",
    "HasQuota": "bot_kit.filters",
    "MemoryThrottle": "bot_kit.throttling",
    "QuotaRequirement": "bot_kit.decorators",
    "RedisThrottle": "bot_kit.throttling",
    "Throttle": "bot_kit.config",
    "get_text": "bot_kit.texts",
    "requires_quota": "bot_kit.decorators",
    "send_paywall": "bot_kit.paywall",
    "setup_billing": "bot_kit.setup",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'bot_kit' has no attribute {name!r}")
    return getattr(import_module(module), name)


__all__ = [
    "Balance",
    "BillingConfig",
    "BillingContext",
    "BillingFacade",
    "HasQuota",
    "MemoryThrottle",
    "QuotaRequirement",
    "RedisThrottle",
    "Throttle",
    "get_text",
    "requires_quota",
    "send_paywall",
    "setup_billing",
]
