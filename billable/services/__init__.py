"""billable services: class-based facades with classmethods (sync + ``a``-prefixed async twins).

Writes are implemented once, synchronously inside ``transaction.atomic``; the async twin
delegates with ``sync_to_async``.
"""

from billable.services.balances import BalanceService
from billable.services.catalog import ProductService
from billable.services.customers import CustomerService
from billable.services.ledger import TransactionService
from billable.services.orders import OrderService

__all__ = [
    "BalanceService",
    "CustomerService",
    "OrderService",
    "ProductService",
    "TransactionService",
]
