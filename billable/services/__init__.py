"""billable services: the public facades (classmethods; sync + ``a``-prefixed async twins).

Each facade validates its input (``billable.validation``), calls the engine
(``billable.ledger``) and returns models or typed results; the published 0.2 shapes come from
``billable.compat``. Writes are implemented once, synchronously inside ``transaction.atomic``;
the async twin delegates with ``sync_to_async``. Facades never call one another.
"""

from billable.services.balances import BalanceService
from billable.services.catalog import OfferService, ProductService
from billable.services.customers import CustomerService
from billable.services.holds import HoldService, PlacedHold, SettledHold
from billable.services.identities import IdentityService, ResolvedIdentity
from billable.services.ledger import TransactionService
from billable.services.orders import OrderService
from billable.services.referrals import ReferralService
from billable.services.trials import TrialService

__all__ = [
    "BalanceService",
    "CustomerService",
    "HoldService",
    "IdentityService",
    "OfferService",
    "OrderService",
    "PlacedHold",
    "ProductService",
    "ReferralService",
    "ResolvedIdentity",
    "SettledHold",
    "TransactionService",
    "TrialService",
]
