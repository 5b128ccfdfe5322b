"""billable models. Import from here: ``from billable.models import Product, Offer``."""

from billable.models.alerts import AlertNotice, NotificationPreference, ProductAlert
from billable.models.api_keys import ApiKey
from billable.models.catalog import Offer, OfferItem, Product
from billable.models.dashboard import RevenueDashboard
from billable.models.events import EventDelivery, EventEndpoint, OutboxEvent
from billable.models.gifts import Gift
from billable.models.identities import Customer, ExternalIdentity
from billable.models.ledger import (
    IdempotencyKey,
    QuotaBatch,
    Reservation,
    ReservationItem,
    Transaction,
)
from billable.models.merges import CustomerMerge
from billable.models.orders import Order, OrderItem
from billable.models.promo import PromoCode, PromoIdentityUse, PromoRedemption
from billable.models.referrals import Referral
from billable.models.trials import TrialHistory

__all__ = [
    "AlertNotice",
    "ApiKey",
    "Customer",
    "CustomerMerge",
    "EventDelivery",
    "EventEndpoint",
    "ExternalIdentity",
    "Gift",
    "IdempotencyKey",
    "NotificationPreference",
    "Offer",
    "OfferItem",
    "Order",
    "OrderItem",
    "OutboxEvent",
    "Product",
    "ProductAlert",
    "PromoCode",
    "PromoIdentityUse",
    "PromoRedemption",
    "QuotaBatch",
    "Referral",
    "Reservation",
    "ReservationItem",
    "RevenueDashboard",
    "Transaction",
    "TrialHistory",
]
