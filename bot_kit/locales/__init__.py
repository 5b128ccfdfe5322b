"""Text catalogs of bot_kit, one module per feature: ``{"en": {...}, "ru": {...}}``."""
