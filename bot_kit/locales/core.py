"""Texts of the core features: identity, gating, paywall, trials, balance, support, errors."""

TEXTS: dict[str, dict[str, str]] = {
    "en": {
        "paywall": "You have run out of {product}. Choose a pack to continue:",
        "paywall_no_offers": "You have run out of {product}. Nothing is on sale right now.",
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
        "paysupport": (
            "Payment support: describe the problem and include the date of the payment. "
            "We answer within 24 hours."
        ),
        "throttled": "Too many requests. Please try again in {seconds} s.",
        "in_progress": "This request is already being processed.",
        "error_unavailable": "Billing is temporarily unavailable. Please try again later.",
        "error_generic": "Something went wrong. Please try again later.",
        "error_quota_exhausted": "You have run out of this product.",
        "error_insufficient_funds": "Your balance is not enough for this.",
        "error_not_found": "Not found.",
        "error_invalid_input": "Invalid request.",
    },
    "ru": {
        "paywall": "У вас закончилось: {product}. Выберите пакет, чтобы продолжить:",
        "paywall_no_offers": "У вас закончилось: {product}. Сейчас нет доступных пакетов.",
        "buy_button": "{name} — {price}",
        "balance_header": "Ваш баланс:",
        "balance_line": "• {name}: {remaining}",
        "balance_line_unlimited": "• {name}: без ограничений",
        "balance_line_until": "• {name}: активно до {expiry}",
        "balance_line_expiry": "• {name}: {remaining} (до {expiry})",
        "balance_empty": "Ваш баланс пуст. Пополнить: /buy",
        "trial_granted": "Пробный период активирован: {products}.",
        "trial_already_used": "Пробный период уже был использован.",
        "trial_unavailable": "Сейчас пробный период недоступен.",
        "paysupport": (
            "Поддержка по платежам: опишите проблему и укажите дату платежа. "
            "Мы отвечаем в течение 24 часов."
        ),
        "throttled": "Слишком много запросов. Попробуйте через {seconds} с.",
        "in_progress": "Этот запрос уже обрабатывается.",
        "error_unavailable": "Биллинг временно недоступен. Попробуйте позже.",
        "error_generic": "Что-то пошло не так. Попробуйте позже.",
        "error_quota_exhausted": "У вас закончился этот продукт.",
        "error_insufficient_funds": "Недостаточно средств на балансе.",
        "error_not_found": "Не найдено.",
        "error_invalid_input": "Некорректный запрос.",
    },
}
