"""RFC 9162 tree hashing and proofs against a naive reference, for every small tree shape."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guard.audit import merkle


def _leaves(n: int) -> list[bytes]:
    return [merkle.leaf_hash(hashlib.sha256(str(i).encode()).digest()) for i in range(n)]


def _naive(leaves: list[bytes]) -> bytes:
    if not leaves:
        return merkle.EMPTY_ROOT
    if len(leaves) == 1:
        return leaves[0]
    k = merkle.split(len(leaves))
    return merkle.node_hash(_naive(leaves[:k]), _naive(leaves[k:]))


def _perfect(leaves: list[bytes]):  # type: ignore[no-untyped-def]
    return lambda level, start: _naive(leaves[start:start + (1 << level)])


def test_known_vector() -> None:
    # RFC 6962/9162: the empty tree's root and a single leaf's root.
    assert merkle.EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert merkle.leaf_hash(b"").hex() == "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"


@pytest.mark.parametrize("n", range(1, 34))
def test_every_inclusion_and_consistency_proof_verifies(n: int) -> None:
    leaves = _leaves(n)
    perfect = _perfect(leaves)
    root = merkle.root(perfect, 0, n)
    assert root == _naive(leaves)
    for i in range(n):
        path = merkle.inclusion_path(perfect, i, 0, n)
        assert merkle.verify_inclusion(i, n, leaves[i], path, root)
        assert not merkle.verify_inclusion(i, n, leaves[(i + 1) % n], path, root) or n == 1
    for m in range(0, n + 1):
        proof = merkle.consistency_proof(perfect, m, n)
        old = _naive(leaves[:m])
        assert merkle.verify_consistency(m, n, old, root, proof), (m, n)
        if 0 < m < n:
            assert not merkle.verify_consistency(m, n, merkle.leaf_hash(b"x"), root, proof)


@settings(max_examples=150, derandomize=True)
@given(st.integers(1, 300), st.data())
def test_range_proofs_rebuild_the_root(n: int, data: st.DataObject) -> None:
    leaves = _leaves(n)
    perfect = _perfect(leaves)
    a = data.draw(st.integers(0, n - 1))
    b = data.draw(st.integers(a + 1, n))
    proof = merkle.range_proof(perfect, a, b, 0, n)
    assert len(proof) <= 2 * n.bit_length()
    assert merkle.root_from_range(leaves[a:b], a, b, n, proof) == _naive(leaves)
    tampered = list(leaves[a:b])
    tampered[0] = merkle.leaf_hash(b"forged")
    assert merkle.root_from_range(tampered, a, b, n, proof) != _naive(leaves)
    assert merkle.root_from_range(leaves[a:b], a, b, n, proof[:-1] if proof else [b"x" * 32]) != _naive(leaves)
