"""Update builders for tests: realistic users, incrementing ``update_id``s, every update type
the kit handles.

    updates = UpdateFactory()
    alice = updates.user(language_code="ru")
    await dp.feed_update(bot, updates.command("predict", user=alice))
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any

from aiogram.types import (
    BotSubscriptionUpdated,
    CallbackQuery,
    Chat,
    InlineQuery,
    Message,
    MessageEntity,
    PreCheckoutQuery,
    RefundedPayment,
    SuccessfulPayment,
    Update,
    User,
)


def _now() -> datetime:
    """Telegram dates have whole seconds."""
    return datetime.now(UTC).replace(microsecond=0)


_NAMES = {"en": ("Alice", "Smith"), "ru": ("Иван", "Петров"), "de": ("Jonas", "Müller")}


class UpdateFactory:
    """Builds aiogram ``Update`` objects; each call gets the next ``update_id``."""

    def __init__(self, *, start_update_id: int = 1, first_user_id: int = 100_001,
                 bot_id: int = 42) -> None:
        self.bot_id = bot_id
        self._update_ids = itertools.count(start_update_id)
        self._user_ids = itertools.count(first_user_id)
        self._message_ids = itertools.count(1)
        self._serials = itertools.count(1)
        self.default_user = self.user()

    # -- people --------------------------------------------------------------------------------

    def user(self, user_id: int | None = None, *, language_code: str | None = "en",
             username: str | None = None, first_name: str | None = None,
             last_name: str | None = None, is_premium: bool | None = None) -> User:
        """A Telegram user (a new id unless ``user_id`` is given) with names for the language."""
        uid = user_id if user_id is not None else next(self._user_ids)
        first, last = _NAMES.get((language_code or "en").split("-")[0], _NAMES["en"])
        return User(id=uid, is_bot=False, first_name=first_name or first,
                    last_name=last_name if last_name is not None else last,
                    username=username if username is not None else f"user{uid}",
                    language_code=language_code, is_premium=is_premium)

    def private_chat(self, user: User) -> Chat:
        return Chat(id=user.id, type="private", first_name=user.first_name,
                    last_name=user.last_name, username=user.username)

    # -- messages ------------------------------------------------------------------------------

    def next_update_id(self) -> int:
        return next(self._update_ids)

    def _message(self, user: User | None, **fields: Any) -> Message:
        sender = user or self.default_user
        chat = fields.pop("chat", None) or self.private_chat(sender)
        return Message(message_id=next(self._message_ids), date=_now(), chat=chat,
                       from_user=sender, **fields)

    def message(self, text: str = "hello", *, user: User | None = None,
                update_id: int | None = None, **fields: Any) -> Update:
        """A text message from ``user`` in their private chat."""
        return self._update(update_id, message=self._message(user, text=text, **fields))

    def command(self, name: str, args: str | None = None, *, user: User | None = None,
                update_id: int | None = None) -> Update:
        """``/name args`` with a ``bot_command`` entity."""
        command = f"/{name.lstrip('/')}"
        text = f"{command} {args}" if args else command
        entity = MessageEntity(type="bot_command", offset=0, length=len(command))
        return self.message(text, user=user, update_id=update_id, entities=[entity])

    def callback(self, data: str, *, user: User | None = None, message_text: str = "…",
                 update_id: int | None = None) -> Update:
        """A button press with ``data`` on a bot message in the user's chat."""
        sender = user or self.default_user
        bot_message = self._message(sender, text=message_text).model_copy(
            update={"from_user": User(id=self.bot_id, is_bot=True, first_name="Test Bot")})
        query = CallbackQuery(id=str(next(self._serials)), from_user=sender,
                              chat_instance=f"ci{sender.id}", message=bot_message, data=data)
        return self._update(update_id, callback_query=query)

    def inline_query(self, query: str = "", *, user: User | None = None,
                     update_id: int | None = None) -> Update:
        """An inline query typed by ``user``."""
        inline = InlineQuery(id=str(next(self._serials)), from_user=user or self.default_user,
                             query=query, offset="")
        return self._update(update_id, inline_query=inline)

    # -- payments ------------------------------------------------------------------------------

    def pre_checkout(self, *, payload: str, total_amount: int, currency: str = "XTR",
                     user: User | None = None, update_id: int | None = None) -> Update:
        """Telegram asking whether the user may pay the invoice with ``payload``."""
        query = PreCheckoutQuery(id=str(next(self._serials)), from_user=user or self.default_user,
                                 currency=currency, total_amount=total_amount,
                                 invoice_payload=payload)
        return self._update(update_id, pre_checkout_query=query)

    def successful_payment(self, *, payload: str, total_amount: int, currency: str = "XTR",
                           charge_id: str | None = None, provider_charge_id: str = "",
                           is_recurring: bool | None = None,
                           is_first_recurring: bool | None = None,
                           subscription_expiration_date: int | None = None,
                           user: User | None = None, update_id: int | None = None) -> Update:
        """The ``successful_payment`` service message (a renewal when ``is_recurring``)."""
        payment = SuccessfulPayment(
            currency=currency, total_amount=total_amount, invoice_payload=payload,
            telegram_payment_charge_id=charge_id or f"stxFAKE{next(self._serials):08d}",
            provider_payment_charge_id=provider_charge_id,
            subscription_expiration_date=subscription_expiration_date,
            is_recurring=is_recurring, is_first_recurring=is_first_recurring,
        )
        return self._update(update_id, message=self._message(user, successful_payment=payment))

    def refunded_payment(self, *, payload: str, total_amount: int, charge_id: str,
                         currency: str = "XTR", user: User | None = None,
                         update_id: int | None = None) -> Update:
        """The ``refunded_payment`` service message."""
        refund = RefundedPayment(currency=currency, total_amount=total_amount,  # type: ignore[arg-type]
                                 invoice_payload=payload, telegram_payment_charge_id=charge_id)
        return self._update(update_id, message=self._message(user, refunded_payment=refund))

    def subscription(self, *, state: str, payload: str, user: User | None = None,
                     update_id: int | None = None) -> Update:
        """A ``subscription`` update: ``canceled``, ``active`` or ``failed``."""
        event = BotSubscriptionUpdated(user=user or self.default_user, invoice_payload=payload,
                                       state=state)
        return self._update(update_id, subscription=event)

    def _update(self, update_id: int | None, **event: Any) -> Update:
        uid = update_id if update_id is not None else self.next_update_id()
        return Update(update_id=uid, **event)


def update_to_json(update: Update) -> dict[str, Any]:
    """The update as Telegram sends it (aliases such as ``from``, unix dates, no nulls)."""
    data: dict[str, Any] = update.model_dump(mode="json", exclude_none=True, by_alias=True)
    return data


__all__ = ["UpdateFactory", "update_to_json"]
