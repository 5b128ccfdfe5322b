"""Django admin for every billable model, one module per domain.

Importing this package registers: catalog (Product, Offer), ledger (QuotaBatch, Transaction,
Reservation, IdempotencyKey — read-only), orders (Order with service-backed actions),
identities (ExternalIdentity, TrialHistory, Referral), API keys (shown once, revoked, never
edited into new secrets), customers (the Customer proxy with its
reports), the revenue dashboard (a proxy of Order) and outbound events (endpoints, the event
log and deliveries, with replay). The names below are re-exported for code
written against the published 0.2 module.
"""

from django.urls import reverse

from billable.admin.api_keys import ApiKeyAdmin
from billable.admin.catalog import OfferAdmin, OfferItemInline, ProductAdmin, ProductAdminForm
from billable.admin.customers import CustomerAdmin
from billable.admin.dashboard import RevenueDashboardAdmin
from billable.admin.events import EventDeliveryAdmin, EventEndpointAdmin, OutboxEventAdmin
from billable.admin.growth import (
    AlertNoticeAdmin,
    GiftAdmin,
    NotificationPreferenceAdmin,
    ProductAlertAdmin,
    PromoCodeAdmin,
    PromoRedemptionAdmin,
)
from billable.admin.identities import ExternalIdentityAdmin, ReferralAdmin, TrialHistoryAdmin
from billable.admin.ledger import (
    CustomerMergeAdmin,
    IdempotencyKeyAdmin,
    QuotaBatchAdmin,
    ReadOnlyAdminMixin,
    ReservationAdmin,
    TransactionAdmin,
)
from billable.admin.orders import OrderAdmin, OrderItemInline
from billable.services.catalog_io import (
    OFFER_CSV_FIELDS,
    OFFER_CSV_HEADERS,
    OFFER_ITEM_CSV_FIELDS,
    PRODUCT_CSV_FIELDS,
)

#: Published 0.2 names of the CSV column tuples.
PRODUCT_IMPORT_EXPORT_FIELDS = PRODUCT_CSV_FIELDS
OFFER_IMPORT_EXPORT_FIELDS = OFFER_CSV_FIELDS
OFFER_ITEMS_COLUMNS = OFFER_ITEM_CSV_FIELDS

__all__ = [
    "OFFER_CSV_HEADERS",
    "OFFER_IMPORT_EXPORT_FIELDS",
    "OFFER_ITEMS_COLUMNS",
    "PRODUCT_IMPORT_EXPORT_FIELDS",
    "AlertNoticeAdmin",
    "ApiKeyAdmin",
    "CustomerAdmin",
    "CustomerMergeAdmin",
    "EventDeliveryAdmin",
    "EventEndpointAdmin",
    "ExternalIdentityAdmin",
    "GiftAdmin",
    "IdempotencyKeyAdmin",
    "NotificationPreferenceAdmin",
    "OfferAdmin",
    "OfferItemInline",
    "OrderAdmin",
    "OrderItemInline",
    "OutboxEventAdmin",
    "ProductAdmin",
    "ProductAdminForm",
    "ProductAlertAdmin",
    "PromoCodeAdmin",
    "PromoRedemptionAdmin",
    "QuotaBatchAdmin",
    "ReadOnlyAdminMixin",
    "ReferralAdmin",
    "ReservationAdmin",
    "RevenueDashboardAdmin",
    "TransactionAdmin",
    "TrialHistoryAdmin",
    "reverse",
]
