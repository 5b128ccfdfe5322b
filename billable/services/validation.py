"""The earlier home of :mod:`billable.validation` (kept: hosts and the bot kit import it)."""

from billable.validation import *  # noqa: F403
from billable.validation import __all__  # noqa: F401
