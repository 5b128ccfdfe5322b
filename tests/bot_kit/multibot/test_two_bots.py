"""Two bots in one process and one database: per-bot or shared wallets and trials, invoices
bound to their bot, payments made to the wrong bot refused and refunded, revenue per bot."""

from __future__ import annotations

from typing import Any

import pytest
from aiogram import Bot, Dispatcher, Router
from aiogram.filters import Command
from aiogram.types import Message, User
from asgiref.sync import sync_to_async

from bot_kit.callbacks import BuyOffer
from bot_kit.config import BillingConfig, bot_id_from_token
from bot_kit.decorators import requires_quota
from bot_kit.models import RefundRequest, TelegramPayment
from bot_kit.payments.payload import verify_payload
from bot_kit.payments.refunds import RefundOutbox
from bot_kit.setup import setup_billing
from bot_kit.testing import FakeSession, UpdateFactory, make_bot
from tests.bot_kit.multibot.common import (
    BOT_A,
    BOT_B,
    SECRETS,
    TOKEN_A,
    TOKEN_B,
    make_catalog,
    two_configs,
)

pytestmark = pytest.mark.django_db(transaction=True)


def gated_router() -> Router:
    """The host's ``/use``: spends one credit (a hold, then a debit of the bot's wallet)."""
    router = Router()

    @router.message(Command("use"))
    @requires_quota("CREDITS")
    async def use(message: Message) -> None:
        await message.answer("used one credit")

    return router


class Side:
    """One bot: its config, dispatcher, fake Bot API session and Bot."""

    def __init__(self, config: BillingConfig, token: str) -> None:
        self.config = config
        self.session = FakeSession()
        self.bot = make_bot(self.session, token=token)
        self.dp = Dispatcher()
        setup_billing(self.dp, config)
        self.dp.include_router(gated_router())

    async def feed(self, update: Any) -> None:
        await self.dp.feed_update(self.bot, update)

    def texts(self) -> list[str]:
        return [str(c.params.get("text", "")) for c in self.session.calls_to("sendMessage")]

    async def invoice(self, updates: UpdateFactory, user: User, sku: str) -> dict:
        await self.feed(updates.callback(BuyOffer(sku=sku).pack(), user=user))
        return self.session.calls_to("sendInvoice")[-1].params

    async def pre_checkout(self, updates: UpdateFactory, user: User, invoice: dict) -> dict:
        [price] = invoice["prices"]
        await self.feed(updates.pre_checkout(payload=invoice["payload"],
                                             total_amount=int(price["amount"]), user=user))
        return self.session.calls_to("answerPreCheckoutQuery")[-1].params

    async def pay(self, updates: UpdateFactory, user: User, invoice: dict,
                  charge_id: str) -> None:
        [price] = invoice["prices"]
        await self.feed(updates.successful_payment(payload=invoice["payload"],
                                                   total_amount=int(price["amount"]),
                                                   charge_id=charge_id, user=user))


@pytest.fixture
def catalog() -> None:
    make_catalog()


def two_sides(wallet: str) -> tuple[Side, Side]:
    config_a, config_b = two_configs(wallet)
    return Side(config_a, TOKEN_A), Side(config_b, TOKEN_B)


@sync_to_async
def accounts(tg_user: User) -> dict[str, tuple[int, int]]:
    """``{provider: (billing user id, CREDITS balance)}`` of every identity of ``tg_user``."""
    from billable.models import ExternalIdentity
    from billable.services import TransactionService

    rows = ExternalIdentity.objects.filter(external_id=str(tg_user.id))
    return {row.provider: (row.user_id, int(TransactionService.get_balance(row.user_id,
                                                                           "CREDITS")))
            for row in rows}


def test_config_validates_the_bot_identity() -> None:
    assert bot_id_from_token(TOKEN_A) == BOT_A == make_bot(token=TOKEN_A).id
    with pytest.raises(ValueError, match="bot token"):
        bot_id_from_token("not-a-token")
    with pytest.raises(ValueError, match="per_bot"):
        BillingConfig(wallet="per_bot")
    with pytest.raises(ValueError, match="wallet"):
        BillingConfig(wallet="every_bot", bot_id=BOT_A)
    with pytest.raises(ValueError, match="bot_id"):
        BillingConfig(bot_id=0)
    shared, per_bot = BillingConfig(bot_id=BOT_A), BillingConfig(bot_id=BOT_A, wallet="per_bot")
    assert (shared.telegram_provider, shared.trial_identity_type) == ("telegram", "telegram")
    assert per_bot.telegram_provider == per_bot.trial_identity_type == f"telegram:{BOT_A}"
    assert BillingConfig().bot_metadata(source="x") == {"source": "x"}
    assert shared.bot_metadata(source="x") == {"source": "x", "bot_id": str(BOT_A)}


async def test_per_bot_wallets_and_trials(updates: UpdateFactory, catalog: None) -> None:
    a, b = two_sides("per_bot")
    alice = updates.user()
    await a.feed(updates.command("trial", user=alice))
    await b.feed(updates.command("trial", user=alice))
    await a.feed(updates.command("trial", user=alice))
    assert "3" in a.texts()[0] and "3" in b.texts()[0]  # granted by each bot
    assert "already" in a.texts()[1].lower()
    found = await accounts(alice)
    assert set(found) == {f"telegram:{BOT_A}", f"telegram:{BOT_B}"}
    (user_a, balance_a), (user_b, balance_b) = found[f"telegram:{BOT_A}"], found[
        f"telegram:{BOT_B}"]
    assert user_a != user_b and balance_a == balance_b == 3
    # A purchase at bot A credits only the wallet of bot A.
    invoice = await a.invoice(updates, alice, "STARS_10")
    assert (await a.pre_checkout(updates, alice, invoice))["ok"] is True
    await a.pay(updates, alice, invoice, "charge-a-1")
    found = await accounts(alice)
    assert found[f"telegram:{BOT_A}"][1] == 13 and found[f"telegram:{BOT_B}"][1] == 3


async def test_shared_wallet_and_one_trial(updates: UpdateFactory, catalog: None) -> None:
    a, b = two_sides("shared")
    bob = updates.user()
    await a.feed(updates.command("trial", user=bob))
    await b.feed(updates.command("trial", user=bob))
    assert "3" in a.texts()[0]
    assert "already" in b.texts()[0].lower()  # one trial for the owner's bots
    invoice = await b.invoice(updates, bob, "STARS_20")
    assert (await b.pre_checkout(updates, bob, invoice))["ok"] is True
    await b.pay(updates, bob, invoice, "charge-b-1")
    found = await accounts(bob)
    assert list(found) == ["telegram"] and found["telegram"][1] == 23  # one wallet


async def test_each_bot_sells_its_own_offers(updates: UpdateFactory, catalog: None) -> None:
    a, b = two_sides("shared")
    carol = updates.user()
    await a.feed(updates.command("buy", user=carol))
    await b.feed(updates.command("buy", user=carol))
    skus = [[row[0]["callback_data"] for row in
             side.session.calls_to("sendMessage")[-1].params["reply_markup"]["inline_keyboard"]]
            for side in (a, b)]
    assert skus == [["bk_buy:STARS_10", "bk_buy:STARS_20"], ["bk_buy:STARS_20"]]
    await b.feed(updates.command("buy", "STARS_10", user=carol))
    assert not b.session.calls_to("sendInvoice")  # B does not sell A's offer


@pytest.mark.parametrize("wallet", ["shared", "per_bot"])
async def test_bot_b_cannot_confirm_an_invoice_of_bot_a(updates: UpdateFactory, catalog: None,
                                                        wallet: str) -> None:
    from billable.models import Order

    a, b = two_sides(wallet)
    dave = updates.user()
    invoice = await a.invoice(updates, dave, "STARS_10")
    payload = verify_payload(invoice["payload"], SECRETS)
    assert payload.bot_id == BOT_A
    order = await Order.objects.aget(pk=payload.order_id)
    assert order.metadata["bot_id"] == str(BOT_A)

    # Pre-checkout at the wrong bot: declined, with the reason in the user's language.
    answer = await b.pre_checkout(updates, dave, invoice)
    assert answer["ok"] is False and "another bot" in answer["error_message"]

    # Paid at bot B anyway (e.g. an invoice of B forged with A's payload): not granted, the
    # order of A stays payable, and the charge is refunded by bot B through the outbox.
    await b.pay(updates, dave, invoice, "charge-wrong-bot")
    payment = await TelegramPayment.objects.aget(charge_id="charge-wrong-bot")
    assert (payment.status, payment.reason, payment.bot_id) in {
        ("rejected", "wrong_bot", BOT_B), ("refunded", "wrong_bot", BOT_B)}
    assert (await Order.objects.aget(pk=order.pk)).status == Order.Status.PENDING
    assert all(balance == 0 for _, balance in (await accounts(dave)).values())
    [refund] = b.session.calls_to("refundStarPayment")
    assert refund.params["telegram_payment_charge_id"] == "charge-wrong-bot"
    assert not a.session.calls_to("refundStarPayment")
    assert (await RefundRequest.objects.aget(payment=payment)).state == "done"
    assert any("another bot" in text for text in b.texts())

    # The right bot still takes the payment.
    assert (await a.pre_checkout(updates, dave, invoice))["ok"] is True
    await a.pay(updates, dave, invoice, "charge-right-bot")
    assert (await Order.objects.aget(pk=order.pk)).status == Order.Status.PAID


@pytest.mark.parametrize(("lang", "expected"), [
    ("en", "We could not apply this payment. This invoice was issued by another bot. The "
           "payment is being refunded automatically. Receipt id: paid-at-b"),
    ("ru", "Не удалось зачесть этот платёж. Этот счёт выставлен другим ботом. Платёж будет "
           "возвращён автоматически. Номер чека: paid-at-b"),
])
async def test_payment_at_the_wrong_bot_is_told_in_whole_sentences(
        updates: UpdateFactory, catalog: None, lang: str, expected: str) -> None:
    a, b = two_sides("shared")
    erin = updates.user(language_code=lang)
    invoice = await a.invoice(updates, erin, "STARS_10")

    await b.pay(updates, erin, invoice, "paid-at-b")

    assert expected in b.texts()


async def test_each_bot_refunds_only_its_own_charges(catalog: None) -> None:
    from bot_kit.payments.refunds import arequest_refund

    for charge, bot_id in (("ra", BOT_A), ("rb", BOT_B), ("legacy", None)):
        await TelegramPayment.objects.acreate(charge_id=charge, telegram_user_id=7, bot_id=bot_id,
                                              currency="XTR", total_amount=5, status="rejected")
        await arequest_refund(charge)
    session_a, session_b = FakeSession(), FakeSession()
    bot_a: Bot = make_bot(session_a, token=TOKEN_A)
    bot_b: Bot = make_bot(session_b, token=TOKEN_B)
    await RefundOutbox(bot_a).process_due()
    await RefundOutbox(bot_b).process_due()
    charges = {name: [c.params["telegram_payment_charge_id"]
                      for c in session.calls_to("refundStarPayment")]
               for name, session in (("a", session_a), ("b", session_b))}
    assert charges == {"a": ["ra", "legacy"], "b": ["rb"]}


@pytest.mark.parametrize("lang", ["en", "ru"])
async def test_admin_refund_at_another_bot_says_that_bot_makes_it(updates: UpdateFactory,
                                                                  catalog: None,
                                                                  lang: str) -> None:
    from bot_kit.texts import get_text

    admin = updates.user(language_code=lang)
    config_a, config_b = two_configs("shared", admin_ids=frozenset({admin.id}))
    a, b = Side(config_a, TOKEN_A), Side(config_b, TOKEN_B)
    await TelegramPayment.objects.acreate(charge_id="paid-at-b", telegram_user_id=7,
                                          bot_id=BOT_B, currency="XTR", total_amount=5,
                                          status="confirmed")

    await a.feed(updates.command("refund", "paid-at-b", user=admin))

    # Bot A cannot refund a charge bot B received: it says who will, and calls nothing.
    said = get_text("refund_queued", lang, charge_id="paid-at-b",
                    state=get_text("refund_state_other_bot", lang, bot_id=BOT_B))
    assert a.texts() == [said]
    assert str(BOT_B) in said
    assert get_text("refund_state_pending", lang) not in said
    assert not a.session.calls_to("refundStarPayment")
    # ... and bot B's refund worker makes the refund.
    assert await RefundOutbox(b.bot).process_due() != {}
    [refund] = b.session.calls_to("refundStarPayment")
    assert refund.params["telegram_payment_charge_id"] == "paid-at-b"


async def test_admin_refund_at_the_bot_that_took_the_payment_is_done(updates: UpdateFactory,
                                                                     catalog: None) -> None:
    from bot_kit.texts import get_text

    admin = updates.user()
    _, config_b = two_configs("shared", admin_ids=frozenset({admin.id}))
    b = Side(config_b, TOKEN_B)
    await TelegramPayment.objects.acreate(charge_id="paid-at-b", telegram_user_id=7,
                                          bot_id=BOT_B, currency="XTR", total_amount=5,
                                          status="confirmed")

    await b.feed(updates.command("refund", "paid-at-b", user=admin))

    assert b.texts()[-1] == get_text("refund_queued", "en", charge_id="paid-at-b",
                                     state=get_text("refund_state_done", "en"))


async def test_reconciliation_compares_a_bot_with_its_own_payments(catalog: None) -> None:
    from bot_kit.payments.reconcile import recorded_charges

    for charge, bot_id in (("xa", BOT_A), ("xb", BOT_B), ("old", None)):
        await TelegramPayment.objects.acreate(charge_id=charge, telegram_user_id=7,
                                              bot_id=bot_id, currency="XTR", total_amount=5,
                                              status="confirmed")
    mine = await sync_to_async(recorded_charges)(bot_id=BOT_B)
    assert sorted(record.charge_id for record in mine) == ["old", "xb"]
    assert len(await sync_to_async(recorded_charges)()) == 3


async def test_dashboard_bot_filter_shows_each_bots_revenue(updates: UpdateFactory,
                                                            catalog: None) -> None:
    from billable.selectors.dashboard import build_dashboard, parse_query

    a, b = two_sides("per_bot")
    erin, frank = updates.user(), updates.user()
    for side, user, sku, charge in ((a, erin, "STARS_10", "d1"), (a, frank, "STARS_20", "d2"),
                                    (b, erin, "STARS_20", "d3")):
        invoice = await side.invoice(updates, user, sku)
        await side.pay(updates, user, invoice, charge)
    await a.feed(updates.command("trial", user=erin))
    await b.feed(updates.command("trial", user=erin))
    await b.feed(updates.command("trial", user=frank))
    await a.feed(updates.command("use", user=erin))
    for _ in range(2):
        await b.feed(updates.command("use", user=frank))
    assert a.texts().count("used one credit") == 1 and b.texts().count("used one credit") == 2

    @sync_to_async
    def figures(bot: str | None) -> tuple[Any, ...]:
        board = build_dashboard(parse_query(bot=bot))
        [stars] = board.revenue or [None]
        used = sum(product.units for product in board.consumption)
        return (board.bots, stars.gross if stars else 0, board.orders, board.paying_users,
                board.conversion.trial_users, used)

    bots = (str(BOT_A), str(BOT_B))
    assert await figures(str(BOT_A)) == (bots, 140, 2, 2, 1, 1)
    assert await figures(str(BOT_B)) == (bots, 90, 1, 1, 2, 2)
    assert await figures(None) == (bots, 230, 3, 3, 3, 3)
    assert (await figures("-"))[1:] == (0, 0, 0, 0, 0)


def test_per_bot_wallets_cannot_share_an_identity_cache() -> None:
    from bot_kit.middlewares.identity import IdentityCache

    config_a, config_b = two_configs("per_bot")
    cache = IdentityCache()
    setup_billing(Dispatcher(), config_a, cache=cache)
    setup_billing(Dispatcher(), config_a, cache=cache)  # the same provider may share it
    with pytest.raises(ValueError, match="own cache"):
        setup_billing(Dispatcher(), config_b, cache=cache)
    shared_a, shared_b = two_configs("shared")
    shared = IdentityCache()
    setup_billing(Dispatcher(), shared_a, cache=shared)
    setup_billing(Dispatcher(), shared_b, cache=shared)  # one wallet: one cache is fine


async def test_the_injected_facade_works_for_its_bot(updates: UpdateFactory,
                                                     catalog: None) -> None:
    from billable.models import Transaction
    from bot_kit.facade import BillingFacade

    config_a, config_b = two_configs("per_bot")
    seen: dict[int, BillingFacade] = {}

    def side(config: BillingConfig, token: str) -> Side:
        made = Side(config, token)
        router = Router()

        @router.message(Command("spend"))
        async def spend(message: Message, billing: BillingFacade) -> None:
            seen[config.bot_id or 0] = billing
            await billing.claim_trial("TRIAL", telegram_id=message.from_user.id)
            await billing.consume("CREDITS", metadata={"why": "demo"})

        made.dp.include_router(router)
        return made

    a, b = side(config_a, TOKEN_A), side(config_b, TOKEN_B)
    gina = updates.user()
    await a.feed(updates.command("spend", user=gina))
    await b.feed(updates.command("spend", user=gina))  # its own trial: a wallet per bot
    assert seen[BOT_A].config is config_a and seen[BOT_B].config is config_b
    rows = [(row.direction, row.metadata.get("bot_id"), row.metadata.get("why"))
            async for row in Transaction.objects.order_by("created_at", "pk")]
    assert rows == [("CREDIT", str(BOT_A), None), ("DEBIT", str(BOT_A), "demo"),
                    ("CREDIT", str(BOT_B), None), ("DEBIT", str(BOT_B), "demo")]
