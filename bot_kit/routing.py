"""Gates in front of the kit's routers: an update none of their handlers can take skips them.

aiogram tries every handler of every router in turn, and every filter of a handler until one
fails. A host's plain text message (or its own callback button) would therefore run each of the
kit's ``Command`` filters, its payment predicates and its ``CallbackData`` filters — about two
dozen filter calls — before reaching the host's handler. :func:`install_gates` puts one
router-level filter (aiogram's ``router.message.filter(...)``) in front of each kit router's
``message`` and ``callback_query`` observers. The gate is derived from the handlers registered
on the observer and lets through exactly the updates that **some** handler could match:

* a ``Command`` / ``CommandStart`` filter (any command name, ``/cmd@bot``, a deep link) can only
  match a message whose text — or caption — has a prefix character (``/``) as its first
  non-whitespace character: that is the first thing aiogram's own filter checks;
* a predicate marked with :func:`needs_message_field` (the kit's ``successful_payment`` and
  ``refunded_payment`` filters) can only match a message with that field set;
* a ``CallbackData.filter()`` can only match a callback query whose data, up to the first
  separator, is the callback class's prefix.

Anything else (a handler without a filter, or with a filter the gate does not know) opens the
gate for every update of that observer: the general path, unchanged. A gate closes only the
observer it sits on (and its sub-routers: a router with sub-routers is never gated). It re-reads
the observer's handlers whenever their number changes, so a handler added to a kit router later
is never skipped. The gate is a necessary condition, never a sufficient one: every handler's own
filters still run, in order, when it lets an update through.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from aiogram import Router
from aiogram.filters import Command, Filter
from aiogram.filters.callback_data import CallbackQueryFilter
from aiogram.types import CallbackQuery, Message

F = TypeVar("F", bound=Callable[..., Any])

#: Predicates that match only a message with the named field set (see needs_message_field).
_FIELDS: dict[Any, str] = {}


def needs_message_field(field: str) -> Callable[[F], F]:
    """Mark a message filter that can only match a message whose ``field`` is set (not
    ``None``); the gate then lets such a message through without calling it."""
    def mark(predicate: F) -> F:
        _FIELDS[predicate] = field
        return predicate

    return mark


class _Gate(Filter):
    """Base: rebuild the condition when the observer's handlers or the sub-routers change."""

    def __init__(self, router: Router, event_name: str) -> None:
        self.router = router
        self.handlers = router.observers[event_name].handlers
        self._seen = -1
        self.open = True

    def _rebuild_if_changed(self) -> None:
        seen = len(self.handlers) + (1 << 20) * len(self.router.sub_routers)
        if seen != self._seen:
            self._seen = seen
            self.open = bool(self.router.sub_routers) or not self._build()

    def _build(self) -> bool:
        """Collect the handlers' conditions; ``False`` when one handler is not understood."""
        raise NotImplementedError


class MessageGate(_Gate):
    """Lets a message through when a kit handler could match it (see the module docstring)."""

    def __init__(self, router: Router) -> None:
        super().__init__(router, "message")
        self.prefixes: frozenset[str] = frozenset()
        self.fields: tuple[str, ...] = ()

    def _build(self) -> bool:
        prefixes: set[str] = set()
        fields: set[str] = set()
        for handler in self.handlers:
            condition = None
            for item in handler.filters or ():
                callback = item.callback
                if isinstance(callback, Command):
                    condition = ("prefix", callback.prefix)
                    break
                field = _FIELDS.get(callback)
                if field is not None:
                    condition = ("field", field)
                    break
            if condition is None:
                return False
            kind, value = condition
            if kind == "prefix":
                prefixes.update(value)
            else:
                fields.add(value)
        self.prefixes, self.fields = frozenset(prefixes), tuple(sorted(fields))
        return True

    async def __call__(self, message: Message) -> bool:
        self._rebuild_if_changed()
        if self.open:
            return True
        for field in self.fields:
            if getattr(message, field, None) is not None:
                return True
        if self.prefixes:
            # aiogram's Command: text or caption, split on whitespace, first character
            text = message.text or message.caption
            if text:
                first = text.lstrip()[:1]
                return bool(first) and first in self.prefixes
        return False


class CallbackGate(_Gate):
    """Lets a callback query through when its data could unpack to a kit ``CallbackData``."""

    def __init__(self, router: Router) -> None:
        super().__init__(router, "callback_query")
        self.prefixes: dict[str, frozenset[str]] = {}

    def _build(self) -> bool:
        prefixes: dict[str, set[str]] = {}
        for handler in self.handlers:
            for item in handler.filters or ():
                callback = item.callback
                if isinstance(callback, CallbackQueryFilter):
                    data = callback.callback_data
                    prefixes.setdefault(data.__separator__, set()).add(data.__prefix__)
                    break
            else:
                return False
        self.prefixes = {sep: frozenset(names) for sep, names in prefixes.items()}
        return True

    async def __call__(self, query: CallbackQuery) -> bool:
        self._rebuild_if_changed()
        if self.open:
            return True
        data = query.data
        if not data:
            return False
        # CallbackData.unpack: the part before the first separator is the prefix
        return any(data.partition(sep)[0] in names for sep, names in self.prefixes.items())


def merge_routers(name: str, routers: list[Router]) -> Router:
    """One router holding the handlers of ``routers``, observer by observer, in their order.

    aiogram tries a router's handlers in order and the routers in order, the first match
    winning, so for routers with no sub-routers, router-level filters or middlewares (the
    kit's feature routers) the merged router matches exactly the same handler for every update
    — and a plain update pays one router visit instead of one per feature."""
    merged = Router(name=name)
    for router in routers:
        if router.sub_routers or any(observer.middleware or observer.outer_middleware
                                     for observer in router.observers.values()):
            raise ValueError(f"router {router.name!r} has sub-routers or middlewares")
        for event_name, observer in router.observers.items():
            merged.observers[event_name].handlers.extend(observer.handlers)
    return merged


def install_gates(router: Router) -> Router:
    """Put a :class:`MessageGate` and a :class:`CallbackGate` in front of ``router``'s
    ``message`` and ``callback_query`` handlers; return the router."""
    router.message.filter(MessageGate(router))
    router.callback_query.filter(CallbackGate(router))
    return router


__all__ = ["CallbackGate", "MessageGate", "install_gates", "merge_routers", "needs_message_field"]
