"""The identity cache against a plain model: LRU order, the bound and evictions by account."""

from __future__ import annotations

from collections import OrderedDict

from hypothesis import given, settings
from hypothesis import strategies as st

from bot_kit.middlewares.identity import CachedIdentity, IdentityCache
from tests.helpers import backend_independent

#: No database, no backend-specific work: runs once, in the SQLite session.
pytestmark = backend_independent

external_ids = st.sampled_from([str(n) for n in range(8)])
user_ids = st.integers(min_value=1, max_value=4)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("put"), external_ids, user_ids),
        st.tuples(st.just("get"), external_ids),
        st.tuples(st.just("discard"), external_ids),
        st.tuples(st.just("discard_users"), st.sets(st.one_of(user_ids, st.none()), max_size=3)),
        st.tuples(st.just("clear")),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(operations, st.integers(min_value=0, max_value=5))
def test_cache_behaves_as_a_bounded_lru_keyed_by_account(ops: list[tuple], bound: int) -> None:
    cache = IdentityCache(max_size=bound)
    model: OrderedDict[str, int] = OrderedDict()
    for op in ops:
        if op[0] == "put":
            _, external_id, user_id = op
            cache.put(external_id, CachedIdentity(user=None, user_id=user_id, profile=()))
            if bound:
                model.pop(external_id, None)
                model[external_id] = user_id
                while len(model) > bound:
                    model.popitem(last=False)
        elif op[0] == "get":
            entry = cache.get(op[1])
            assert (entry.user_id if entry else None) == model.get(op[1])
            if op[1] in model:
                model.move_to_end(op[1])
        elif op[0] == "discard":
            cache.discard(op[1])
            model.pop(op[1], None)
        elif op[0] == "discard_users":
            cache.discard_users(op[1])
            for key in [k for k, u in model.items() if u in op[1]]:
                del model[key]
        else:
            cache.clear()
            model.clear()

        assert [(k, e.user_id) for k, e in cache._entries.items()] == list(model.items())
        by_user: dict[str, set[str]] = {}
        for key, user_id in model.items():
            by_user.setdefault(str(user_id), set()).add(key)
        assert cache._by_user == by_user


def test_evicting_one_account_leaves_the_others() -> None:
    cache = IdentityCache(max_size=10_000)
    for n in range(10_000):
        cache.put(str(n), CachedIdentity(user=None, user_id=n % 100, profile=()))

    cache.discard_users({7, "42"})

    assert len(cache) == 10_000 - 200
    assert cache.get("7") is None and cache.get("142") is None and cache.get("9942") is None
    assert cache.get("8").user_id == 8
