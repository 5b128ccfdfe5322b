"""bot_kit.testing — test a bot without Telegram.

* ``FakeSession`` / ``make_bot``: an aiogram session backed by an in-memory fake Bot API that
  records calls, answers realistically and replays injected errors;
* ``UpdateFactory``: builders for messages, commands, callbacks, inline queries, pre-checkout
  queries, successful / refunded payments and subscription updates;
* ``FakeBotAPIServer``: the same fake served over loopback HTTP for real polling.
"""

from bot_kit.testing.api import FakeAPIError, FakeBotAPI, RecordedCall
from bot_kit.testing.server import FakeBotAPIServer
from bot_kit.testing.session import FakeSession, make_bot
from bot_kit.testing.updates import UpdateFactory, update_to_json

__all__ = [
    "FakeAPIError",
    "FakeBotAPI",
    "FakeBotAPIServer",
    "FakeSession",
    "RecordedCall",
    "UpdateFactory",
    "make_bot",
    "update_to_json",
]
