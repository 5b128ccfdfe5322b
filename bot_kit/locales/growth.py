"""Texts of the growth features: promo codes, gifts, low-balance and expiry alerts."""

from __future__ import annotations

#: English source texts (gettext msgids, ``msgctxt`` = the key). Translations live in
#: ``<lang>/LC_MESSAGES/bot_kit.po`` beside this file.
MESSAGES: dict[str, str] = {
    "promo_usage": "Send /promo CODE to use a promo code.",
    "promo_granted": "Promo code {code} applied: {products}.",
    "promo_invoice_description": "{name} with promo code {code}",
    "promo_choose_offer": "Choose what to buy with promo code {code}:",
    "error_promo_unknown": "There is no such promo code.",
    "error_promo_expired": "This promo code has expired.",
    "error_promo_exhausted": "This promo code has been used up.",
    "error_promo_already_used": "You have already used this promo code.",
    "error_promo_not_first_time": "This promo code is for a first purchase only.",
    "error_promo_not_applicable": "This promo code does not apply to this offer.",
    "precheckout_promo_expired": "The promo code is no longer valid for this invoice. Send "
                                 "/promo CODE again.",
    "precheckout_promo_unknown": "This discounted invoice is no longer valid.",
    "gift_catalog": "Choose a gift:",
    "gift_empty": "There is nothing to gift right now.",
    "gift_ready": "Your gift is paid! Send this link to the person you want to give {name} "
                  "to:\n{link}\nIt can be claimed once, until {expires}.",
    "gift_received": "You received a gift: {products}. Enjoy!",
    "gift_claimed_notice": "Your gift “{name}” has been claimed. Thank you!",
    "error_gift_unknown": "This gift link is not valid.",
    "error_gift_own": "This is your own gift: send the link to someone else.",
    "error_gift_already_claimed": "This gift has already been claimed.",
    "error_gift_expired": "This gift is no longer available.",
    "notifications_on": "Balance and expiry reminders are on. Send /notifications off to turn "
                        "them off.",
    "notifications_off": "Balance and expiry reminders are off. Send /notifications on to turn "
                         "them back on.",
    "alert_low_balance": "You have {balance} {product} left.",
    "alert_expiring": "Your {product} expires on {date}.",
    "alert_buy_button": "Top up: {name} — {price}",
}
