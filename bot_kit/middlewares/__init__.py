"""aiogram middlewares of bot_kit: identity (outer, on updates) and quota gating (inner)."""

from bot_kit.middlewares.identity import IdentityCache, IdentityMiddleware
from bot_kit.middlewares.quota import QuotaMiddleware

__all__ = ["IdentityCache", "IdentityMiddleware", "QuotaMiddleware"]
