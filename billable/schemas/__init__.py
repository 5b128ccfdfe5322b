"""Request and response schemas of the REST API, one module per domain.

Every name the published 0.2 ``billable.schemas`` module had is importable from here.
"""

from billable.schemas.catalog import OfferItemSchema, OfferSchema, ProductSchema
from billable.schemas.common import BaseSchema, CommonResponse
from billable.schemas.customers import CustomerMergeResponse, CustomerMergeSchema
from billable.schemas.identities import IdentifySchemaIn, IdentifySchemaOut
from billable.schemas.orders import (
    OrderCancelSchema,
    OrderConfirmSchema,
    OrderCreateSchema,
    OrderItemSchema,
    OrderRefundSchema,
    OrderSchema,
)
from billable.schemas.referrals import ReferralAssignSchema
from billable.schemas.trials import TrialGrantSchema
from billable.schemas.wallet import (
    ActiveBatchSchema,
    BalanceFeatureSchema,
    BalanceSummarySchema,
    ExchangeSchema,
    QuotaBatchSchema,
    QuotaCheckSchema,
    QuotaConsumeSchema,
    TransactionSchema,
    WalletBalanceSchema,
)

__all__ = [
    "ActiveBatchSchema",
    "BalanceFeatureSchema",
    "BalanceSummarySchema",
    "BaseSchema",
    "CommonResponse",
    "CustomerMergeResponse",
    "CustomerMergeSchema",
    "ExchangeSchema",
    "IdentifySchemaIn",
    "IdentifySchemaOut",
    "OfferItemSchema",
    "OfferSchema",
    "OrderCancelSchema",
    "OrderConfirmSchema",
    "OrderCreateSchema",
    "OrderItemSchema",
    "OrderRefundSchema",
    "OrderSchema",
    "ProductSchema",
    "QuotaBatchSchema",
    "QuotaCheckSchema",
    "QuotaConsumeSchema",
    "ReferralAssignSchema",
    "TransactionSchema",
    "TrialGrantSchema",
    "WalletBalanceSchema",
]
