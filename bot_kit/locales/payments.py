"""Texts of the purchase flow: catalog, pre-checkout answers, receipts, refunds, subscriptions."""

from __future__ import annotations

#: English source texts (gettext msgids, ``msgctxt`` = the key). Translations live in
#: ``<lang>/LC_MESSAGES/bot_kit.po`` beside this file.
MESSAGES: dict[str, str] = {
    "buy_catalog": "Choose what to buy:",
    "buy_empty": "Nothing is on sale right now.",
    "precheckout_invalid": "This invoice is not valid. Please request a new one with /buy.",
    "precheckout_wrong_buyer": "This invoice was issued to another user.",
    "precheckout_wrong_bot": "This invoice was issued by another bot.",
    "precheckout_not_found": "This order no longer exists. Please use /buy again.",
    "precheckout_not_payable": "This order was cancelled. Please use /buy again.",
    "precheckout_already_paid": "This order is already paid.",
    "precheckout_amount_mismatch": "The price has changed. Please request a new invoice.",
    "precheckout_unavailable": "Payments are temporarily unavailable. Please try later.",
    "payment_receipt": "Payment received, thank you! Order #{order_id}: {name}, {amount}. "
                       "Receipt id: {charge_id}",
    "payment_rejected": "We could not apply this payment. {reason} The payment is being "
                        "refunded automatically. Receipt id: {charge_id}",
    "refund_usage": "Usage: /refund <charge id or order id>",
    "refund_forbidden": "This command is for administrators only.",
    "refund_queued": "Refund of {charge_id}: {state}.",
    "refunded_notice": "Your payment {charge_id} was refunded.",
    "subscribe_catalog": "Choose a subscription:",
    "subscribe_empty": "There are no subscriptions right now.",
    "subscribe_link": "{name}: {amount} every {period}. Tap the button to subscribe.",
    "subscribe_button": "Subscribe",
    "subscription_status": "Your subscription {name}: {state} (paid until {expires}).",
    "subscription_cancel_button": "Cancel subscription",
    "subscription_resume_button": "Re-enable subscription",
    "subscription_canceled": "Your subscription was cancelled; access stays until {expires}.",
    "subscription_resumed": "Your subscription was re-enabled.",
    "subscription_change_refused": "Telegram did not accept this change; your subscription "
                                   "stays as it was. /subscribe shows its state.",
    "subscription_failed": "The renewal payment of {name} failed; access ends at {expires}.",
    "error_not_purchasable": "This offer cannot be bought here.",
    "error_payment_not_found": "No payment found for this id.",
    "error_refund_not_allowed": "This payment has already been refunded.",
    "error_subscription_not_found": "You have no subscription.",
    "error_payments_misconfigured": "Payments are not configured for this bot.",
    "precheckout_already_subscribed": "You already have this subscription. Manage it with "
                                      "/subscribe.",
    "refund_state_done": "done",
    "refund_state_pending": "queued, will be retried",
    "refund_state_failed": "failed, see the admin",
    "refund_state_other_bot": "queued; it is made by bot {bot_id}, which took the payment",
    "subscription_state_active": "active",
    "subscription_state_canceled": "cancelled",
    "subscription_state_failed": "renewal payment failed",
    "subscription_canceled_notice": "Your subscription {name} was cancelled; access stays until "
                                    "{expires}.",
    "subscription_expired": "Your subscription {name} ended on {expires}. Renew it with "
                            "/subscribe.",
    "subscription_refund_canceled": "Your subscription {name} was cancelled because its payment "
                                    "was refunded.",
}

#: Earlier English sources (msgids) of texts whose source changed: key → older msgids. A host
#: catalog translated against an older source still overrides the text (``bot_kit.texts``).
PREVIOUS_MSGIDS: dict[str, tuple[str, ...]] = {
    # "{reason}" (a sentence with a capital letter) followed a colon: "…payment: This invoice…".
    "payment_rejected": ("We could not apply this payment: {reason} It is being refunded "
                         "automatically. Receipt id: {charge_id}",),
}

#: Texts with plural forms: key → (singular, plural) English msgids; ``{n}`` is the number.
PLURALS: dict[str, tuple[str, str]] = {
    "period_days": ("{n} day", "{n} days"),
    "period_minutes": ("{n} minute", "{n} minutes"),
    "period_seconds": ("{n} second", "{n} seconds"),
}
