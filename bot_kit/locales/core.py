"""Texts of the core features: identity, gating, paywall, trials, balance, support, errors."""

from __future__ import annotations

#: English source texts (gettext msgids, ``msgctxt`` = the key). Translations live in
#: ``<lang>/LC_MESSAGES/bot_kit.po`` beside this file.
MESSAGES: dict[str, str] = {
    "paywall": "You have run out of {product}. Choose a pack to continue:",
    "paywall_subscribe": "You have run out of {product}. Subscribe to continue:",
    "paywall_no_offers": "You have run out of {product}. Nothing is on sale right now.",
    "paywall_subscription_renews": "You have run out of {product}. Your subscription {name} "
                                   "renews on {date}.",
    "paywall_subscription_ends": "You have run out of {product}. Your subscription {name} ends "
                                 "on {date} and will not renew.",
    "paywall_subscriber_packs": "Need more now? Choose a pack:",
    "paywall_subscriber_subscriptions": "Or choose another subscription:",
    "buy_button": "{name} — {price}",
    "balance_header": "Your balance:",
    "balance_line": "• {name}: {remaining}",
    "balance_line_unlimited": "• {name}: unlimited",
    "balance_line_until": "• {name}: active until {expiry}",
    "balance_line_expiry": "• {name}: {remaining} (until {expiry})",
    "balance_empty": "Your balance is empty. Use /buy to get more.",
    "trial_granted": "Your free trial is active: {products}.",
    "trial_already_used": "The free trial has already been used.",
    "trial_unavailable": "There is no free trial at the moment.",
    "paysupport": "Payment support: describe the problem and include the date of the payment. "
                  "We answer within 24 hours.",
    "throttled": "Too many requests. Please try again in {seconds} s.",
    "in_progress": "This request is already being processed.",
    "error_unavailable": "Billing is temporarily unavailable. Please try again later.",
    "error_generic": "Something went wrong. Please try again later.",
    "error_quota_exhausted": "You have run out of this product.",
    "error_insufficient_funds": "Your balance is not enough for this.",
    "error_not_found": "Not found.",
    "error_invalid_input": "Invalid request.",
    "paywall_unavailable": "{product} is not available right now.",
}
