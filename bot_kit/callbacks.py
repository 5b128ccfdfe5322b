"""Callback data shared by the paywall, the catalog keyboards and the purchase and
subscription flows."""

from aiogram.filters.callback_data import CallbackData


class BuyOffer(CallbackData, prefix="bk_buy"):
    """A "buy" button: pressing it starts the purchase of the offer ``sku``."""

    sku: str


class SubscribeOffer(CallbackData, prefix="bk_sub"):
    """A "subscribe" button (``/subscribe`` catalog or paywall): pressing it sends the invoice
    link of the subscription offer ``sku``."""

    sku: str


__all__ = ["BuyOffer", "SubscribeOffer"]
