"""Shared model helpers: time-ordered UUIDs and CAPS normalisation of keys and SKUs."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterable, Iterator, KeysView, ValuesView
from typing import Any

from django.db import models
from django.db.models import Q

#: Field names whose values are stored upper-case and matched case-insensitively.
CAPS_FIELDS = frozenset({"product_key", "sku"})

_LOOKUPS_WITHOUT_VALUE_NORMALISATION = frozenset({"isnull", "regex", "iregex"})


def uuid7() -> uuid.UUID:
    """A time-ordered UUID (RFC 9562 version 7): sorts by creation time, indexes well."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76
    value |= ((rand >> 62) & 0xFFF) << 64
    value |= 0b10 << 62
    value |= rand & ((1 << 62) - 1)
    return uuid.UUID(int=value)


def normalize_key(value: Any) -> Any:
    """Upper-case and strip a product key / SKU; non-strings are returned unchanged."""
    if isinstance(value, str):
        return value.strip().upper()
    return value


def _normalize_lookup(lookup: str, value: Any) -> Any:
    parts = lookup.split("__")
    suffix = parts[-1] if len(parts) > 1 else ""
    field = parts[-2] if suffix and parts[-1] not in CAPS_FIELDS else parts[-1]
    if field not in CAPS_FIELDS or suffix in _LOOKUPS_WITHOUT_VALUE_NORMALISATION:
        return value
    if isinstance(value, str):
        return normalize_key(value)
    if isinstance(value, (list, tuple, set, frozenset)):
        return type(value)(normalize_key(v) for v in value)
    if isinstance(value, (Iterator, KeysView, ValuesView)):  # generators, dict views: read once
        return [normalize_key(v) for v in value]
    return value


def normalize_lookups(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {key: _normalize_lookup(key, value) for key, value in kwargs.items()}


def normalize_q(node: Any) -> Any:
    """Return a copy of a ``Q`` tree with CAPS lookups normalised."""
    if not isinstance(node, Q):
        return node
    clone = Q()
    clone.connector = node.connector
    clone.negated = node.negated
    children: list[Any] = []
    for child in node.children:
        if isinstance(child, tuple) and len(child) == 2:
            children.append((child[0], _normalize_lookup(child[0], child[1])))
        else:
            children.append(normalize_q(child))
    clone.children = children
    return clone


class CapsQuerySet(models.QuerySet):
    """QuerySet whose lookups on ``product_key`` / ``sku`` (also across relations) ignore case.

    ``get``, ``aget``, ``filter``, ``exclude``, ``get_or_create`` and ``update_or_create`` all go
    through ``_filter_or_exclude``; ``update`` normalises assigned values too.
    """

    def _filter_or_exclude(self, negate: bool, args: Any, kwargs: Any) -> Any:
        args = tuple(normalize_q(arg) for arg in args)
        parent: Any = super()
        return parent._filter_or_exclude(negate, args, normalize_lookups(kwargs))

    def update(self, **kwargs: Any) -> int:
        return super().update(**{k: normalize_key(v) if k in CAPS_FIELDS else v
                                 for k, v in kwargs.items()})

    def get_or_create(self, defaults: Any = None, **kwargs: Any) -> Any:
        return super().get_or_create(defaults=defaults, **normalize_lookups(kwargs))

    def update_or_create(self, defaults: Any = None, create_defaults: Any = None,
                         **kwargs: Any) -> Any:
        return super().update_or_create(
            defaults=defaults, create_defaults=create_defaults, **normalize_lookups(kwargs)
        )


CapsManager = models.Manager.from_queryset(CapsQuerySet)


def caps_values(objs: Iterable[models.Model], field: str) -> list[str]:
    return [getattr(obj, field) for obj in objs if getattr(obj, field, None)]
