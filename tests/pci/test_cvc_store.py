"""The CVC store on its own: encrypted, bound to its card, taken once, expiring; Redis down fails closed."""

from __future__ import annotations

import os
from datetime import UTC, datetime

import pytest

from guard.clock import FixedClock
from guard.pci.cvc import CvcStoreUnavailable, MemoryCvcStore, RedisCvcStore, put_cvc, take_cvc

KEY = os.urandom(32)


def test_memory_store_takes_once_and_expires() -> None:
    clock = FixedClock(datetime(2026, 11, 23, 15, tzinfo=UTC))
    store = MemoryCvcStore(clock)
    put_cvc(store, KEY, tenant_id="ten_a", token="tok_1", cvc="737", ttl_seconds=600)
    assert b"737" not in store._data["ten_a:tok_1"][1]
    assert take_cvc(store, KEY, tenant_id="ten_b", token="tok_1") is None  # another tenant
    assert take_cvc(store, KEY, tenant_id="ten_a", token="tok_1") == "737"
    assert take_cvc(store, KEY, tenant_id="ten_a", token="tok_1") is None
    put_cvc(store, KEY, tenant_id="ten_a", token="tok_2", cvc="1234", ttl_seconds=600)
    clock.advance(seconds=600)
    assert take_cvc(store, KEY, tenant_id="ten_a", token="tok_2") is None
    assert len(store) == 0


def test_blob_moved_to_another_card_is_unusable() -> None:
    store = MemoryCvcStore(FixedClock(datetime(2026, 11, 23, 15, tzinfo=UTC)))
    put_cvc(store, KEY, tenant_id="ten_a", token="tok_1", cvc="737", ttl_seconds=60)
    store.put("ten_a:tok_2", store.take("ten_a:tok_1") or b"", 60)
    assert take_cvc(store, KEY, tenant_id="ten_a", token="tok_2") is None


def test_unreachable_redis_fails_closed() -> None:
    store = RedisCvcStore("redis://127.0.0.1:1/0", "guardtest:")
    with pytest.raises(CvcStoreUnavailable):
        put_cvc(store, KEY, tenant_id="ten_a", token="tok_1", cvc="737", ttl_seconds=60)
    with pytest.raises(CvcStoreUnavailable):
        take_cvc(store, KEY, tenant_id="ten_a", token="tok_1")
