"""Which endpoint URLs can take an event's POST: one rule for the deliverer and the model.

Dependency-free (the models import it, and the rest of the event package imports the models).
"""

from __future__ import annotations

from urllib.parse import urlsplit


def url_problem(url: str) -> str:
    """Why events cannot be POSTed to ``url`` (``""`` when they can): the scheme must be
    ``http`` or ``https``, with a host, a valid port and no NUL or whitespace."""
    text = str(url or "")
    if "\x00" in text or any(ch.isspace() for ch in text):
        return "Undeliverable URL: it holds a NUL or whitespace character"
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 -- parsing the port raises ValueError when it is malformed
    except ValueError as exc:
        return f"Undeliverable URL: {exc}"
    if parts.scheme not in ("http", "https"):
        shown = f"{parts.scheme!r}" if parts.scheme else "none"
        return f"Undeliverable URL: scheme {shown}, events are POSTed over http:// or https://"
    if not parts.hostname:
        return "Undeliverable URL: no host"
    return ""


__all__ = ["url_problem"]
