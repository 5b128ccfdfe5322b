"""billable models. Import from here: ``from billable.models import Product, Offer``."""

from billable.models.api_keys import ApiKey
from billable.models.catalog import Offer, OfferItem, Product
from billable.models.dashboard import RevenueDashboard
from billable.models.events import EventDelivery, EventEndpoint, OutboxEvent
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
from billable.models.referrals import Referral
from billable.models.trials import TrialHistory

__all__ = [
    "ApiKey",
    "Customer",
    "CustomerMerge",
    "EventDelivery",
    "EventEndpoint",
    "ExternalIdentity",
    "IdempotencyKey",
    "Offer",
    "OfferItem",
    "Order",
    "OrderItem",
    "OutboxEvent",
    "Product",
    "QuotaBatch",
    "Referral",
    "Reservation",
    "ReservationItem",
    "RevenueDashboard",
    "Transaction",
    "TrialHistory",
]
