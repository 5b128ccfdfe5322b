"""The strict fake Bot API: every rule refuses what Telegram refuses, with Telegram's description,
and lets the normal call through; ``strict=False`` accepts anything.

Each refusal goes through aiogram (``FakeSession``), so the host sees the exception real
Telegram causes (``TelegramBadRequest`` with the description), and a few through the loopback
HTTP server, whose form fields are decoded differently.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiogram import Bot
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import TelegramBadRequest
from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup, LabeledPrice

from bot_kit.testing import FakeBotAPIServer, FakeSession, make_bot
from bot_kit.testing.rules import RuleState, refusal, utf16_len, visible_text
from tests.helpers import backend_independent

#: No database: runs once, in the SQLite session.
pytestmark = backend_independent

QUERY_INVALID = "Bad Request: query is too old and response timeout expired or query ID is invalid"


def keyboard(**button: Any) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(inline_keyboard=[[InlineKeyboardButton(**button)]])


def invoice(**changes: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {"title": "Pack", "description": "10 predictions", "payload": "p",
                              "currency": "XTR", "prices": [LabeledPrice(label="Pack", amount=50)]}
    fields.update(changes)
    return fields


Call = Callable[[Bot], Awaitable[Any]]

#: (what is broken, the call, Telegram's description)
REFUSED: list[tuple[str, Call, str]] = [
    ("text over 4096", lambda b: b.send_message(7, "x" * 4097), "Bad Request: message is too long"),
    ("emoji count twice", lambda b: b.send_message(7, "😀" * 2049),
     "Bad Request: message is too long"),
    ("empty text", lambda b: b.send_message(7, ""), "Bad Request: message text is empty"),
    ("blank text", lambda b: b.send_message(7, "  \n "), "Bad Request: message text is empty"),
    ("edited text over 4096", lambda b: b.edit_message_text("y" * 4097, chat_id=7, message_id=1),
     "Bad Request: MESSAGE_TOO_LONG"),
    ("caption over 1024", lambda b: b.send_photo(7, "file-id", caption="c" * 1025),
     "Bad Request: message caption is too long"),
    ("callback data over 64 bytes",
     lambda b: b.send_message(7, "pick", reply_markup=keyboard(text="Buy",
                                                               callback_data="Ж" * 33)),
     "Bad Request: BUTTON_DATA_INVALID"),
    ("empty callback data",
     lambda b: b.send_message(7, "pick", reply_markup=keyboard(text="Buy", callback_data="")),
     "Bad Request: can't parse inline keyboard button: Text buttons are unallowed in the "
     "inline keyboard"),
    ("empty button text",
     lambda b: b.send_message(7, "pick", reply_markup=keyboard(text=" ", callback_data="x")),
     "Bad Request: BUTTON_TEXT_INVALID"),
    ("url button without http(s)/tg",
     lambda b: b.send_message(7, "go", reply_markup=keyboard(text="Open", url="ftp://x.org")),
     "Bad Request: BUTTON_URL_INVALID"),
    ("markup of an edit",
     lambda b: b.edit_message_reply_markup(chat_id=7, message_id=1, reply_markup=keyboard(
         text="Buy", callback_data="d" * 65)), "Bad Request: BUTTON_DATA_INVALID"),
    ("callback answer over 200",
     lambda b: b.answer_callback_query("q1", text="a" * 201), "Bad Request: MESSAGE_TOO_LONG"),
    ("declined pre-checkout without a message",
     lambda b: b.answer_pre_checkout_query("p1", ok=False),
     'Bad Request: parameter "error_message" is required'),
    ("invoice title over 32", lambda b: b.send_invoice(7, **invoice(title="T" * 33)),
     "Bad Request: INVOICE_TITLE_INVALID"),
    ("empty invoice title", lambda b: b.send_invoice(7, **invoice(title="")),
     'Bad Request: parameter "title" is required'),
    ("description over 255", lambda b: b.create_invoice_link(**invoice(description="d" * 256)),
     "Bad Request: INVOICE_DESCRIPTION_INVALID"),
    ("payload over 128 bytes", lambda b: b.send_invoice(7, **invoice(payload="п" * 65)),
     "Bad Request: INVOICE_PAYLOAD_INVALID"),
    ("Stars invoice with two prices", lambda b: b.send_invoice(7, **invoice(prices=[
        LabeledPrice(label="A", amount=1), LabeledPrice(label="B", amount=2)])),
     "Bad Request: STARS_INVOICE_INVALID"),
    ("Stars invoice with a provider token",
     lambda b: b.create_invoice_link(provider_token="tok", **invoice()),
     "Bad Request: STARS_INVOICE_INVALID"),
    ("fiat invoice without a provider token", lambda b: b.send_invoice(7, **invoice(
        currency="USD")), "Bad Request: PAYMENT_PROVIDER_INVALID"),
    ("zero amount", lambda b: b.send_invoice(7, **invoice(prices=[
        LabeledPrice(label="Pack", amount=0)])), "Bad Request: CURRENCY_TOTAL_AMOUNT_INVALID"),
    ("empty price label", lambda b: b.send_invoice(7, **invoice(prices=[
        LabeledPrice(label="", amount=5)])),
     "Bad Request: can't parse labeled price: LabeledPrice label must be non-empty"),
    ("subscription in another currency",
     lambda b: b.create_invoice_link(subscription_period=2592000, provider_token="tok",
                                     **invoice(currency="USD")),
     "Bad Request: SUBSCRIPTION_PERIOD_INVALID"),
    ("subscription over 10000 Stars",
     lambda b: b.create_invoice_link(subscription_period=2592000, **invoice(prices=[
         LabeledPrice(label="Pro", amount=10001)])), "Bad Request: SUBSCRIPTION_PRICE_INVALID"),
    ("refund without a charge id",
     lambda b: b.refund_star_payment(user_id=7, telegram_payment_charge_id=""),
     'Bad Request: parameter "telegram_payment_charge_id" is required'),
    ("refund without a user", lambda b: b.refund_star_payment(user_id=0,
                                                              telegram_payment_charge_id="c"),
     "Bad Request: invalid user_id specified"),
    ("subscription edit without a charge id",
     lambda b: b.edit_user_star_subscription(user_id=7, telegram_payment_charge_id="",
                                             is_canceled=True),
     'Bad Request: parameter "telegram_payment_charge_id" is required'),
    ("unsupported HTML tag", lambda b: b.send_message(7, "1 <x> 2", parse_mode="HTML"),
     'Bad Request: can\'t parse entities: Unsupported start tag "x" at byte offset 2'),
    ("unclosed HTML tag", lambda b: b.send_message(7, "<b>bold", parse_mode="HTML"),
     'Bad Request: can\'t parse entities: Can\'t find end tag corresponding to start tag "b"'),
    ("unescaped MarkdownV2 character",
     lambda b: b.send_message(7, "Price: 5.00", parse_mode="MarkdownV2"),
     "Bad Request: can't parse entities: Character '.' is reserved and must be escaped with "
     "the preceding '\\'"),
    ("a default parse mode applies", lambda b: Bot(
        "42:TEST", session=b.session, default=DefaultBotProperties(parse_mode="HTML")
    ).send_message(7, "a < b"), "Bad Request: can't parse entities: Unclosed start tag at byte "
                                "offset 2"),
]


@pytest.mark.parametrize(("call", "description"), [(c, d) for _, c, d in REFUSED],
                         ids=[name for name, _, _ in REFUSED])
async def test_each_rule_refuses_like_telegram(call: Call, description: str) -> None:
    session = FakeSession()
    with pytest.raises(TelegramBadRequest) as refused:
        await call(make_bot(session))
    assert refused.value.message == description
    assert [d for _, d in session.refused] == [description]


async def test_strict_off_accepts_anything() -> None:
    session = FakeSession(strict=False)
    bot = make_bot(session)
    for _, call, _ in REFUSED:
        await call(bot)
    assert session.refused == []
    assert make_bot(strict=False).session.fake_api.strict is False  # type: ignore[attr-defined]
    assert FakeBotAPIServer(strict=False).api.strict is False


async def test_normal_calls_pass() -> None:
    session = FakeSession()
    bot = make_bot(session)
    await bot.send_message(7, "x" * 4096)
    await bot.send_message(7, "😀" * 2048)
    await bot.send_message(7, "<b>" + "x" * 4094 + "</b> &amp;", parse_mode="HTML")  # 4096 seen
    await bot.send_message(7, "*Bold* and 5\\.00 \\(net\\)", parse_mode="MarkdownV2")
    await bot.edit_message_text("z" * 4096, chat_id=7, message_id=1)
    await bot.send_photo(7, "file-id", caption="c" * 1024)
    await bot.send_photo(7, "file-id")
    await bot.send_message(7, "pick", reply_markup=InlineKeyboardMarkup(inline_keyboard=[
        [InlineKeyboardButton(text="Buy", callback_data="Ж" * 32)],
        [InlineKeyboardButton(text="Open", url="https://t.me/$abc")],
        [InlineKeyboardButton(text="Chat", url="tg://user?id=7")],
        [InlineKeyboardButton(text="Share", switch_inline_query="")]]))
    assert await bot.answer_callback_query("q1", text="a" * 200)
    assert await bot.answer_callback_query("q2")
    assert await bot.answer_pre_checkout_query("p1", ok=True)
    assert await bot.answer_pre_checkout_query("p2", ok=False, error_message="Sold out")
    await bot.send_invoice(7, **invoice(title="T" * 32, description="d" * 255,
                                        payload="п" * 64))
    await bot.send_invoice(7, provider_token="tok", **invoice(currency="USD", prices=[
        LabeledPrice(label="A", amount=100), LabeledPrice(label="Tax", amount=20)]))
    await bot.create_invoice_link(subscription_period=2592000, **invoice(prices=[
        LabeledPrice(label="Pro", amount=10000)]))
    assert await bot.refund_star_payment(user_id=7, telegram_payment_charge_id="c")
    assert await bot.edit_user_star_subscription(user_id=7, telegram_payment_charge_id="c",
                                                 is_canceled=False)
    assert session.refused == []


@pytest.mark.parametrize("method", ["answerCallbackQuery", "answerPreCheckoutQuery"])
async def test_a_query_is_answered_once(method: str) -> None:
    session = FakeSession()
    bot = make_bot(session)

    async def answer(query_id: str) -> Any:
        if method == "answerCallbackQuery":
            return await bot.answer_callback_query(query_id)
        return await bot.answer_pre_checkout_query(query_id, ok=True)

    assert await answer("17")
    with pytest.raises(TelegramBadRequest) as second:
        await answer("17")
    assert second.value.message == QUERY_INVALID
    assert await answer("18")  # another query is unaffected


async def test_a_refused_answer_leaves_the_query_open() -> None:
    """Telegram refuses the too-long answer; the query stays unanswered and a correct answer
    then succeeds."""
    bot = make_bot(FakeSession())
    with pytest.raises(TelegramBadRequest):
        await bot.answer_callback_query("5", text="a" * 201)
    assert await bot.answer_callback_query("5", text="ok")


async def test_injected_failures_come_before_the_rules() -> None:
    session = FakeSession()
    session.fail("sendMessage", description="Bad Request: chat not found")
    with pytest.raises(TelegramBadRequest, match="chat not found"):
        await make_bot(session).send_message(7, "")
    assert session.refused == []


async def test_the_http_server_applies_the_same_rules() -> None:
    """Form fields (JSON-encoded markup and prices, ``ok=false``) are checked as decoded."""
    async with FakeBotAPIServer() as server:
        bot = Bot("42:TEST", session=AiohttpSession(api=TelegramAPIServer.from_base(server.url)))
        try:
            await bot.send_message(7, "pick", reply_markup=keyboard(text="Buy",
                                                                    callback_data="ok"))
            with pytest.raises(TelegramBadRequest, match="BUTTON_DATA_INVALID"):
                await bot.send_message(7, "pick", reply_markup=keyboard(text="Buy",
                                                                        callback_data="é" * 33))
            with pytest.raises(TelegramBadRequest, match="STARS_INVOICE_INVALID"):
                await bot.send_invoice(7, **invoice(prices=[LabeledPrice(label="A", amount=1),
                                                            LabeledPrice(label="B", amount=1)]))
            with pytest.raises(TelegramBadRequest, match="error_message"):
                await bot.answer_pre_checkout_query("9", ok=False)
            assert await bot.answer_pre_checkout_query("9", ok=False, error_message="No")
            with pytest.raises(TelegramBadRequest, match="query is too old"):
                await bot.answer_pre_checkout_query("9", ok=True)
        finally:
            await bot.session.close()
    assert [m for m, _ in server.api.refused] == ["sendMessage", "sendInvoice",
                                                  "answerPreCheckoutQuery",
                                                  "answerPreCheckoutQuery"]


def test_visible_text_counts_what_the_user_reads() -> None:
    assert visible_text("<b>a</b>&lt;&#33;", "HTML") == "a<!"
    assert visible_text("*a* \\_b\\_", "MarkdownV2") == "a _b_"
    assert visible_text("<b>*raw*", None) == "<b>*raw*"
    assert utf16_len("a😀") == 3
    assert refusal(RuleState(), "getMe", {}) is None
