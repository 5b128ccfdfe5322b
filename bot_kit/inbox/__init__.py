"""The durable inbox: every Telegram update is committed before Telegram is told it arrived.

* ``store`` — the table's operations (store, claim with a lease, renew, finish, retry …);
* ``worker.InboxWorker`` — drains the inbox through a Dispatcher;
* ``polling.InboxPoller`` — long polling that confirms an offset only after the commit;
* ``webhook`` — the receiving side of a webhook (secret check, store, answer).

See docs/delivery.md for the guarantees and why every update goes through the inbox.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "InboxWorker": "bot_kit.inbox.worker",
    "InboxPoller": "bot_kit.inbox.polling",
    "WebhookSecretMissing": "bot_kit.inbox.webhook",
    "accept": "bot_kit.inbox.webhook",
    "webhook_secret": "bot_kit.inbox.webhook",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'bot_kit.inbox' has no attribute {name!r}")
    return getattr(import_module(module), name)


__all__ = ["InboxPoller", "InboxWorker", "WebhookSecretMissing", "accept", "webhook_secret"]
