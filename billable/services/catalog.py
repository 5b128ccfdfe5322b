"""Placeholder: being implemented."""


class ProductService:
    """Placeholder: being implemented."""
