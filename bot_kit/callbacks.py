"""Callback data shared by the paywall, the catalog keyboard and the purchase flow."""

from aiogram.filters.callback_data import CallbackData


class BuyOffer(CallbackData, prefix="bk_buy"):
    """A "buy" button: pressing it starts the purchase of the offer ``sku``."""

    sku: str


__all__ = ["BuyOffer"]
