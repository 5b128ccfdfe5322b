"""Names under which bot_kit puts values into aiogram's handler data (dependency injection).

A handler receives them by declaring a parameter with the same name, e.g.
``async def handler(message: Message, billing_user_id: int, billing: BillingFacade)``.
"""

#: The billing account (an instance of ``AUTH_USER_MODEL``).
BILLING_USER = "billing_user"
#: Its primary key.
BILLING_USER_ID = "billing_user_id"
#: A ``BillingFacade`` bound to the user (balance, consume, summary …).
BILLING = "billing"
#: The ``BillingConfig`` given to ``setup_billing``.
BILLING_CONFIG = "billing_config"
#: The language code chosen for the user's texts (``en``, ``ru`` …).
BILLING_LANG = "billing_lang"
#: The ``Balance`` injected by the ``HasQuota`` filter.
BILLING_BALANCE = "billing_balance"
#: Handler flag read by the quota middleware (set by ``@requires_quota``).
QUOTA_FLAG = "billable_quota"
#: True when the inbox hands out an update whose previous worker died mid-way (lease expired).
INBOX_TAKEOVER = "inbox_takeover"
#: The attempt number of an update processed from the inbox (1 for the first).
INBOX_ATTEMPT = "inbox_attempt"

__all__ = [
    "BILLING",
    "BILLING_BALANCE",
    "BILLING_CONFIG",
    "BILLING_LANG",
    "BILLING_USER",
    "BILLING_USER_ID",
    "INBOX_ATTEMPT",
    "INBOX_TAKEOVER",
    "QUOTA_FLAG",
]
