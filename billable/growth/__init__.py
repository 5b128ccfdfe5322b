"""Growth workflows: promo codes, gifts and alerts (docs/growth.md).

A layer above the facades: each workflow composes the public services (orders, grants) and is
used by the interfaces (REST, admin, commands, bot_kit's port). The engine and the facades never
import it.
"""
