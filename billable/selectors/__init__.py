"""Read-side queries (selectors): what the admin, the API and reports show, computed in the
database. Writes live in :mod:`billable.services`; nothing here changes data."""

__all__: list[str] = []
