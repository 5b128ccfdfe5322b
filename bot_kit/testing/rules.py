"""The Bot API rules the fake enforces (``FakeBotAPI(strict=True)``, the default).

Real Telegram refuses a call that breaks one of its documented limits with ``400`` and a
description; a fake that accepts anything lets such code pass its tests and fail in production.
Each rule below reads a call's parameters (as ``FakeSession`` / ``FakeBotAPIServer`` decode
them) and returns Telegram's description of the refusal, or ``None``. The descriptions are the
texts Telegram's Bot API server answers (its own checks, or the MTProto error it relays) —
except where marked *unconfirmed*: there the exact wording was not found and the fake uses the
MTProto-style code the server is expected to relay.

Lengths of texts are counted in UTF-16 code units, as Telegram counts entity offsets (an emoji
outside the BMP counts 2): a kit that fits that count fits whichever way Telegram counts.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

#: ``check(api_state, params) -> description | None``.
Check = Callable[["RuleState", dict[str, Any]], "str | None"]

MESSAGE_LIMIT = 4096
CAPTION_LIMIT = 1024
CALLBACK_DATA_LIMIT = 64
CALLBACK_ANSWER_LIMIT = 200
TITLE_LIMIT = 32
DESCRIPTION_LIMIT = 255
PAYLOAD_LIMIT = 128

QUERY_INVALID = "Bad Request: query is too old and response timeout expired or query ID is invalid"


def utf16_len(text: str) -> int:
    """Length as Telegram counts it (UTF-16 code units)."""
    return len(text.encode("utf-16-le")) // 2


class RuleState:
    """What the rules remember between calls: the query ids answered so far."""

    def __init__(self) -> None:
        self.answered: dict[str, set[str]] = {"answerCallbackQuery": set(),
                                              "answerPreCheckoutQuery": set()}


def _required(params: Mapping[str, Any], name: str) -> str | None:
    value = params.get(name)
    if value is None or value == "":
        return f'Bad Request: parameter "{name}" is required'
    return None


# -- texts and parse modes ---------------------------------------------------------------------

_HTML_TAGS = frozenset({"b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "span",
                        "tg-spoiler", "a", "code", "pre", "blockquote", "tg-emoji"})
_HTML_ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
_MD2_RESERVED = set("_*[]()~`>#+-=|{}.!")
_MD2_MARKS = {"*": "Bold", "_": "Italic", "__": "Underline", "~": "Strikethrough",
              "||": "Spoiler", "`": "Code"}


class EntityError(ValueError):
    """A text that Telegram cannot parse in its ``parse_mode``."""


def _parse_html(text: str) -> str:
    """The visible text of HTML-formatted ``text``; ``EntityError`` as Telegram refuses it."""
    out: list[str] = []
    stack: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char == "&":
            match = re.match(r"&(#\d+|#x[0-9a-fA-F]+|[a-zA-Z]+);", text[i:])
            name = match.group(1) if match else ""
            if match and (name in _HTML_ENTITIES or name.startswith("#")):
                out.append(_HTML_ENTITIES.get(name) or chr(
                    int(name[2:], 16) if name.startswith("#x") else int(name[1:])))
                i += match.end()
                continue
            out.append(char)
            i += 1
            continue
        if char != "<":
            out.append(char)
            i += 1
            continue
        offset = len(text[:i].encode())
        end = text.find(">", i)
        if end < 0:
            raise EntityError(f"Unclosed start tag at byte offset {offset}")
        body = text[i + 1:end]
        if body.startswith("/"):
            name = body[1:].strip().lower()
            if not stack:
                raise EntityError(f'Unexpected end tag at byte offset {offset}')
            if name and name != stack[-1]:
                raise EntityError(f'Unmatched end tag at byte offset {offset}, expected '
                                  f'"</{stack[-1]}>", found "</{name}>"')
            stack.pop()
        else:
            name = re.split(r"\s", body.strip(), maxsplit=1)[0].lower() if body.strip() else ""
            if name not in _HTML_TAGS:
                raise EntityError(f'Unsupported start tag "{name}" at byte offset {offset}')
            stack.append(name)
        i = end + 1
    if stack:
        raise EntityError(f'Can\'t find end tag corresponding to start tag "{stack[-1]}"')
    return "".join(out)


def _parse_markdown_v2(text: str) -> str:
    """The visible text of MarkdownV2 ``text``; ``EntityError`` as Telegram refuses it."""
    out: list[str] = []
    open_marks: list[tuple[str, int]] = []
    i = 0
    while i < len(text):
        char = text[i]
        offset = len(text[:i].encode())
        if char == "\\":
            if i + 1 < len(text):
                out.append(text[i + 1])
            i += 2
            continue
        mark = text[i:i + 2] if text[i:i + 2] in ("__", "||") else char
        if mark in _MD2_MARKS:
            if open_marks and open_marks[-1][0] == mark:
                open_marks.pop()
            else:
                open_marks.append((mark, offset))
            i += len(mark)
            continue
        if char in _MD2_RESERVED:
            raise EntityError(f"Character '{char}' is reserved and must be escaped with the "
                              f"preceding '\\'")
        out.append(char)
        i += 1
    if open_marks:
        mark, offset = open_marks[-1]
        raise EntityError(f"Can't find end of {_MD2_MARKS[mark]} entity at byte offset {offset}")
    return "".join(out)


def visible_text(text: str, parse_mode: str | None) -> str:
    """``text`` as the user reads it (entities parsed); ``EntityError`` when Telegram refuses it.

    ``HTML`` and ``MarkdownV2`` are checked (the common refusals: an unsupported or unclosed tag,
    an unescaped reserved character); legacy ``Markdown`` and no parse mode are taken as is."""
    mode = (parse_mode or "").lower()
    if mode == "html":
        return _parse_html(text)
    if mode == "markdownv2":
        return _parse_markdown_v2(text)
    return text


def _text_rule(field: str, limit: int, too_long: str, *, required: bool) -> Check:
    def check(state: RuleState, params: dict[str, Any]) -> str | None:
        value = params.get(field)
        if value is None or value == "":
            return "Bad Request: message text is empty" if required else None
        try:
            shown = visible_text(str(value), params.get("parse_mode"))
        except EntityError as refused:
            return f"Bad Request: can't parse entities: {refused}"
        if required and not shown.strip():
            return "Bad Request: message text is empty"
        if utf16_len(shown) > limit:
            return too_long
        return None

    return check


# -- inline keyboards --------------------------------------------------------------------------

_URL = re.compile(r"^(https?|tg)://\S+$", re.IGNORECASE)
_BUTTON_KINDS = ("url", "callback_data", "web_app", "login_url", "switch_inline_query",
                 "switch_inline_query_current_chat", "switch_inline_query_chosen_chat",
                 "copy_text", "callback_game", "pay")


def _buttons(markup: Any) -> Iterable[Mapping[str, Any]]:
    if not isinstance(markup, Mapping):
        return ()
    rows = markup.get("inline_keyboard") or ()
    return [b for row in rows if isinstance(row, list) for b in row if isinstance(b, Mapping)]


def _has(button: Mapping[str, Any], kind: str) -> bool:
    """Whether the button has the action ``kind`` (an empty url or callback data is none)."""
    value = button.get(kind)
    if kind.startswith("switch_inline_query"):
        return value is not None  # "" is a valid switch query
    return value not in (None, "", False)


def check_button(button: Mapping[str, Any]) -> str | None:
    """Telegram's refusal of one inline keyboard button, or ``None``."""
    text = button.get("text")
    if not isinstance(text, str) or not text.strip():
        return "Bad Request: BUTTON_TEXT_INVALID"  # unconfirmed wording
    data = button.get("callback_data")
    url = button.get("url")
    if not any(_has(button, kind) for kind in _BUTTON_KINDS):
        return ("Bad Request: can't parse inline keyboard button: Text buttons are unallowed "
                "in the inline keyboard")
    if data not in (None, "") and len(str(data).encode()) > CALLBACK_DATA_LIMIT:
        return "Bad Request: BUTTON_DATA_INVALID"
    if url not in (None, "") and not _URL.match(str(url)):
        return "Bad Request: BUTTON_URL_INVALID"
    return None


def _markup_rule(state: RuleState, params: dict[str, Any]) -> str | None:
    for button in _buttons(params.get("reply_markup")):
        refused = check_button(button)
        if refused is not None:
            return refused
    return None


# -- callback and pre-checkout queries ---------------------------------------------------------

def _answer_once(method: str, id_field: str) -> Check:
    def check(state: RuleState, params: dict[str, Any]) -> str | None:
        query_id = str(params.get(id_field) or "")
        if not query_id or query_id in state.answered[method]:
            return QUERY_INVALID
        state.answered[method].add(query_id)
        return None

    return check


def _callback_answer_text(state: RuleState, params: dict[str, Any]) -> str | None:
    text = params.get("text")
    if text and utf16_len(str(text)) > CALLBACK_ANSWER_LIMIT:
        return "Bad Request: MESSAGE_TOO_LONG"
    return None


def _pre_checkout_error_message(state: RuleState, params: dict[str, Any]) -> str | None:
    if params.get("ok") in (False, "false", "False", 0, "0"):
        return _required(params, "error_message")
    return None


# -- invoices ----------------------------------------------------------------------------------

def _sized(field: str, limit: int, too_long: str, *, in_bytes: bool = False) -> Check:
    def check(state: RuleState, params: dict[str, Any]) -> str | None:
        missing = _required(params, field)
        if missing is not None:
            return missing
        value = str(params[field])
        size = len(value.encode()) if in_bytes else utf16_len(value)
        return too_long if size > limit else None

    return check


def _prices(state: RuleState, params: dict[str, Any]) -> str | None:
    prices = params.get("prices")
    if not isinstance(prices, list) or not prices:
        return "Bad Request: can't parse prices JSON object" if not isinstance(prices, list) \
            else "Bad Request: there must be at least one price"
    for price in prices:
        if not isinstance(price, Mapping) or not str(price.get("label") or ""):
            return ("Bad Request: can't parse labeled price: LabeledPrice label must be "
                    "non-empty")
        amount = price.get("amount")
        if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
            return "Bad Request: CURRENCY_TOTAL_AMOUNT_INVALID"
    currency = str(params.get("currency") or "")
    if not currency:
        return 'Bad Request: parameter "currency" is required'
    if currency == "XTR":
        if len(prices) != 1 or params.get("provider_token"):
            return "Bad Request: STARS_INVOICE_INVALID"
    elif not params.get("provider_token"):
        return "Bad Request: PAYMENT_PROVIDER_INVALID"
    return None


#: Telegram's period of a Stars subscription, and the most a subscription may cost.
SUBSCRIPTION_PERIOD = 2592000
SUBSCRIPTION_MAX_STARS = 10000


def _subscription(state: RuleState, params: dict[str, Any]) -> str | None:
    """``subscription_period``: Stars only, at most 10000 Stars (the period itself is 30 days,
    or shorter on Telegram's test server, which the fake also stands for)."""
    period = params.get("subscription_period")
    if period is None:
        return None
    if params.get("currency") != "XTR" or not isinstance(period, int) or period <= 0:
        return "Bad Request: SUBSCRIPTION_PERIOD_INVALID"
    total = sum(int(p.get("amount", 0)) for p in params.get("prices") or ()
                if isinstance(p, Mapping))
    if total > SUBSCRIPTION_MAX_STARS:
        return "Bad Request: SUBSCRIPTION_PRICE_INVALID"  # unconfirmed wording
    return None


def _user_and_charge(state: RuleState, params: dict[str, Any]) -> str | None:
    user_id = params.get("user_id")
    try:
        valid = int(user_id) > 0 if user_id is not None else False
    except (TypeError, ValueError):
        valid = False
    if not valid:
        return "Bad Request: invalid user_id specified"
    return _required(params, "telegram_payment_charge_id")


def _is_canceled(state: RuleState, params: dict[str, Any]) -> str | None:
    if params.get("is_canceled") is None:
        return 'Bad Request: parameter "is_canceled" is required'
    return None


_MESSAGE_TEXT = _text_rule("text", MESSAGE_LIMIT, "Bad Request: message is too long",
                           required=True)
_EDITED_TEXT = _text_rule("text", MESSAGE_LIMIT, "Bad Request: MESSAGE_TOO_LONG", required=True)
_CAPTION = _text_rule("caption", CAPTION_LIMIT, "Bad Request: message caption is too long",
                      required=False)
_INVOICE: tuple[Check, ...] = (
    _sized("title", TITLE_LIMIT, "Bad Request: INVOICE_TITLE_INVALID"),  # unconfirmed wording
    _sized("description", DESCRIPTION_LIMIT,
           "Bad Request: INVOICE_DESCRIPTION_INVALID"),  # unconfirmed wording
    _sized("payload", PAYLOAD_LIMIT, "Bad Request: INVOICE_PAYLOAD_INVALID", in_bytes=True),
    _prices,
    _markup_rule,
)
_CAPTIONED = ("sendPhoto", "sendDocument", "sendVideo", "sendAnimation", "sendAudio",
              "sendVoice", "sendPaidMedia", "editMessageCaption", "copyMessage")

#: Method → the rules checked, in order (the first refusal is the answer).
RULES: dict[str, tuple[Check, ...]] = {
    "sendMessage": (_MESSAGE_TEXT, _markup_rule),
    "editMessageText": (_EDITED_TEXT, _markup_rule),
    "editMessageReplyMarkup": (_markup_rule,),
    **{method: (_CAPTION, _markup_rule) for method in _CAPTIONED},
    "sendInvoice": _INVOICE,
    "createInvoiceLink": (*_INVOICE, _subscription),
    "answerCallbackQuery": (_callback_answer_text,
                            _answer_once("answerCallbackQuery", "callback_query_id")),
    "answerPreCheckoutQuery": (_pre_checkout_error_message,
                               _answer_once("answerPreCheckoutQuery", "pre_checkout_query_id")),
    "refundStarPayment": (_user_and_charge,),
    "editUserStarSubscription": (_user_and_charge, _is_canceled),
}


def refusal(state: RuleState, method: str, params: dict[str, Any]) -> str | None:
    """Telegram's description of why it refuses ``method(params)``, or ``None``."""
    for check in RULES.get(method, ()):
        refused = check(state, params)
        if refused is not None:
            return refused
    return None


__all__ = ["CALLBACK_DATA_LIMIT", "MESSAGE_LIMIT", "QUERY_INVALID", "RULES", "EntityError",
           "RuleState", "check_button", "refusal", "utf16_len", "visible_text"]
