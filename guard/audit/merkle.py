"""RFC 9162 Merkle tree hashing, inclusion and consistency proofs, and range proofs.

Leaves are the events' chain hashes: leaf = SHA-256(0x00 || event hash), node =
SHA-256(0x01 || left || right), the tree split at the largest power of two below n. Because a
pruned event keeps its chain hash, pruning never invalidates a proof.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence

Hash = bytes
# Returns the hash of the perfect, aligned subtree [start, start + 2**level).
PerfectFn = Callable[[int, int], Hash]


def leaf_hash(entry: bytes) -> Hash:
    """RFC 9162 leaf hash."""
    return hashlib.sha256(b"\x00" + entry).digest()


def node_hash(left: Hash, right: Hash) -> Hash:
    """RFC 9162 interior node hash."""
    return hashlib.sha256(b"\x01" + left + right).digest()


EMPTY_ROOT = hashlib.sha256(b"").digest()


def split(n: int) -> int:
    """The largest power of two strictly below n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def root(perfect: PerfectFn, start: int, end: int) -> Hash:
    """MTH(D[start:end]) from perfect-subtree hashes."""
    n = end - start
    if n == 0:
        return EMPTY_ROOT
    if n & (n - 1) == 0 and start % n == 0:
        return perfect(n.bit_length() - 1, start)
    k = split(n)
    return node_hash(root(perfect, start, start + k), root(perfect, start + k, end))


def inclusion_path(perfect: PerfectFn, index: int, start: int, end: int) -> list[Hash]:
    """PATH(m, D[start:end]) of RFC 9162 (index relative to the whole tree)."""
    n = end - start
    if n <= 1:
        return []
    k = split(n)
    if index < start + k:
        return [*inclusion_path(perfect, index, start, start + k), root(perfect, start + k, end)]
    return [*inclusion_path(perfect, index, start + k, end), root(perfect, start, start + k)]


def consistency_proof(perfect: PerfectFn, m: int, n: int) -> list[Hash]:
    """PROOF(m, D[n]) of RFC 9162."""
    if m <= 0 or m >= n:
        return []
    return _subproof(perfect, m, 0, n, True)


def _subproof(perfect: PerfectFn, m: int, start: int, end: int, whole: bool) -> list[Hash]:
    n = end - start
    if m == n:
        return [] if whole else [root(perfect, start, end)]
    k = split(n)
    if m <= k:
        return [*_subproof(perfect, m, start, start + k, whole), root(perfect, start + k, end)]
    return [*_subproof(perfect, m - k, start + k, end, False), root(perfect, start, start + k)]


def verify_inclusion(index: int, size: int, leaf: Hash, path: Sequence[Hash], expected_root: Hash) -> bool:
    """RFC 9162 section 2.1.3.2."""
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == expected_root


def verify_consistency(first: int, second: int, first_root: Hash, second_root: Hash,
                       proof: Sequence[Hash]) -> bool:
    """RFC 9162 section 2.1.4.2 (plus the trivial cases first == 0 and first == second)."""
    if first == 0:
        return not proof
    if first == second:
        return not proof and first_root == second_root
    if first > second or not proof:
        return False
    path = list(proof)
    if first & (first - 1) == 0:
        path.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == first_root and sr == second_root and sn == 0


def range_proof(perfect: PerfectFn, a: int, b: int, start: int, end: int) -> list[Hash]:
    """Hashes of the maximal subtrees of D[start:end] outside [a, b), left to right.

    With the leaves of [a, b) they rebuild the root: an export of a range proves, offline,
    that its events are exactly those the checkpoint's tree holds at those positions.
    """
    if end <= a or start >= b:
        return [root(perfect, start, end)]
    if a <= start and end <= b:
        return []
    k = split(end - start)
    return range_proof(perfect, a, b, start, start + k) + range_proof(perfect, a, b, start + k, end)


def root_from_range(leaves: Sequence[Hash], a: int, b: int, size: int, proof: Sequence[Hash]) -> Hash | None:
    """Rebuild MTH(D[0:size]) from the leaf hashes of [a, b) and a range proof; None if malformed."""
    it: Iterator[Hash] = iter(proof)

    def walk(start: int, end: int) -> Hash:
        if end <= a or start >= b:
            return next(it)
        if end - start == 1:
            return leaves[start - a]
        k = split(end - start)
        return node_hash(walk(start, start + k), walk(start + k, end))

    if not (0 <= a < b <= size) or len(leaves) != b - a:
        return None
    try:
        out = walk(0, size)
    except StopIteration:
        return None
    return out if next(it, None) is None else None
