"""``FakeAPIError``: a Bot API error answered by the fake (shared by ``api`` and ``results``)."""

from __future__ import annotations

from typing import Any

_STATUS_TEXT = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
                409: "Conflict", 413: "Request Entity Too Large", 429: "Too Many Requests",
                500: "Internal Server Error", 502: "Bad Gateway"}


class FakeAPIError(Exception):
    """Raise from a responder to answer with a Bot API error."""

    def __init__(self, status: int = 400, description: str | None = None, *,
                 retry_after: int | None = None) -> None:
        self.status = status
        self.retry_after = retry_after
        self.description = description or _describe(status, retry_after)
        super().__init__(self.description)

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"ok": False, "error_code": self.status,
                                "description": self.description}
        if self.retry_after is not None:
            body["parameters"] = {"retry_after": self.retry_after}
        return body


def _describe(status: int, retry_after: int | None) -> str:
    text = _STATUS_TEXT.get(status, "Error")
    if retry_after is not None:
        return f"{text}: retry after {retry_after}"
    return text if status >= 500 else f"{text}: fake error"


__all__ = ["FakeAPIError"]
