"""The verifiable log: stored Merkle nodes, signed checkpoints, witnesses, proofs, exports."""

from __future__ import annotations

import base64
import csv
import io
import json
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import insert, select, tuple_
from sqlalchemy.orm import Session

from guard.audit import merkle
from guard.audit.models import (
    AuditCheckpoint,
    AuditEvent,
    AuditHead,
    AuditWatermark,
    AuditWitness,
    CheckpointReceipt,
    MerkleNode,
    MerkleState,
)
from guard.audit.service import GENESIS, SERVED, chain_hash, event_to_api, format_ts
from guard.clock import Clock
from guard.db import insert_ignore
from guard.errors import Conflict, NotFound, ValidationFailed
from guard.ids import new_id
from guard.keyring import Keyring

log = logging.getLogger(__name__)
SIGNING_PURPOSE = "checkpoint_ed25519"
_BATCH = 5000


# ----------------------------------------------------------------------------- tree storage


class _Source:
    """Perfect-subtree hashes of one tenant's tree, fetched in batches and memoized."""

    def __init__(self, session: Session, tenant_id: str) -> None:
        self.session = session
        self.tenant_id = tenant_id
        self.cache: dict[tuple[int, int], bytes] = {}

    def perfect(self, level: int, start: int) -> bytes:
        key = (level, start >> level)
        if key not in self.cache:
            self.prefetch([key])
        return self.cache[key]

    def prefetch(self, keys: Iterable[tuple[int, int]]) -> None:
        want = [k for k in set(keys) if k not in self.cache]
        leaves = [idx + 1 for lvl, idx in want if lvl == 0]
        nodes = [(lvl, idx) for lvl, idx in want if lvl > 0]
        for chunk in _chunks(leaves, 500):
            for seq, h in self.session.execute(select(AuditEvent.seq, AuditEvent.hash).where(
                    AuditEvent.tenant_id == self.tenant_id, AuditEvent.seq.in_(chunk))):
                self.cache[(0, seq - 1)] = merkle.leaf_hash(bytes.fromhex(h))
        for nchunk in _chunks(nodes, 500):
            for lvl, idx, node in self.session.execute(select(
                    MerkleNode.level, MerkleNode.idx, MerkleNode.hash).where(
                    MerkleNode.tenant_id == self.tenant_id,
                    tuple_(MerkleNode.level, MerkleNode.idx).in_(nchunk))):
                self.cache[(lvl, idx)] = bytes(node)
        missing = [k for k in want if k not in self.cache]
        if missing:
            raise LookupError(f"tree nodes missing for {self.tenant_id}: {missing[:3]}")


def _chunks(items: list[Any], n: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), n):
        yield items[i:i + n]


def _planned(session: Session, tenant_id: str, compute: Any) -> Any:
    """Run a tree computation twice: once to learn which nodes it reads, then for real."""
    wanted: list[tuple[int, int]] = []

    def record(level: int, start: int) -> bytes:
        wanted.append((level, start >> level))
        return b"\x00" * 32

    compute(record)
    src = _Source(session, tenant_id)
    src.prefetch(wanted)
    return compute(src.perfect)


def tree_size(session: Session, tenant_id: str) -> int:
    """How many leaves have stored nodes."""
    st = session.get(MerkleState, tenant_id)
    return st.size if st else 0


def extend_tree(session: Session, tenant_id: str, upto: int) -> int:
    """Store the perfect-subtree nodes for leaves up to `upto` (locked: one extender at a time)."""
    insert_ignore(session, MerkleState, tenant_id=tenant_id, size=0)
    state = session.execute(select(MerkleState).where(MerkleState.tenant_id == tenant_id)
                            .with_for_update()).scalar_one()
    size = state.size
    if upto <= size:
        return size
    # The right edge of the tree built so far: one perfect subtree per set bit of `size`.
    edge: list[tuple[int, int]] = []
    pos = 0
    for level in reversed(range(size.bit_length())):
        if size >> level & 1:
            edge.append((level, pos >> level))
            pos += 1 << level
    src = _Source(session, tenant_id)
    src.prefetch(edge)
    stack = [(lvl, idx, src.cache[(lvl, idx)]) for lvl, idx in edge]
    out: list[dict[str, Any]] = []
    last = size
    while last < upto:
        rows = session.execute(select(AuditEvent.seq, AuditEvent.hash).where(
            AuditEvent.tenant_id == tenant_id, AuditEvent.seq > last, AuditEvent.seq <= upto)
            .order_by(AuditEvent.seq).limit(_BATCH)).all()
        if not rows:
            break
        for seq, h in rows:
            if seq != last + 1:
                raise LookupError(f"seq {last + 1} missing from {tenant_id}'s chain")
            last = seq
            level, idx, node = 0, seq - 1, merkle.leaf_hash(bytes.fromhex(h))
            while stack and stack[-1][0] == level:
                _, left_idx, left = stack.pop()
                level, idx, node = level + 1, left_idx >> 1, merkle.node_hash(left, node)
                out.append({"tenant_id": tenant_id, "level": level, "idx": idx, "hash": node})
            stack.append((level, idx, node))
        if len(out) >= _BATCH:
            session.execute(insert(MerkleNode), out)
            out = []
    if out:
        session.execute(insert(MerkleNode), out)
    state.size = last
    session.flush()
    return last


def tree_root(session: Session, tenant_id: str, size: int) -> bytes:
    """MTH of the first `size` leaves."""
    return _planned(session, tenant_id, lambda p: merkle.root(p, 0, size))  # type: ignore[no-any-return]


def _require_built(session: Session, tenant_id: str, size: int) -> None:
    if size < 0 or size > tree_size(session, tenant_id):
        raise ValidationFailed([{"loc": ["query", "size"],
                                 "msg": "larger than the checkpointed tree (create a checkpoint first)"}])


def inclusion(session: Session, tenant_id: str, seq: int, size: int) -> dict[str, Any]:
    """Inclusion proof of event `seq` in the tree of `size` leaves."""
    _require_built(session, tenant_id, size)
    if not 1 <= seq <= size:
        raise NotFound(f"event {seq} is not in a tree of size {size}")
    path = _planned(session, tenant_id, lambda p: merkle.inclusion_path(p, seq - 1, 0, size))
    rows = {r[0]: r[1] for r in session.execute(select(AuditEvent.seq, AuditEvent.hash).where(
        AuditEvent.tenant_id == tenant_id, AuditEvent.seq.in_([seq - 1, seq])))}
    return {
        "seq": seq, "leaf_index": seq - 1, "tree_size": size,
        "event_hash": rows[seq], "prev_hash": rows.get(seq - 1, GENESIS),
        "leaf_hash": merkle.leaf_hash(bytes.fromhex(rows[seq])).hex(),
        "path": [h.hex() for h in path], "root_hash": tree_root(session, tenant_id, size).hex(),
    }


def consistency(session: Session, tenant_id: str, first: int, second: int) -> dict[str, Any]:
    """Consistency proof between the trees of `first` and `second` leaves."""
    if first > second:
        raise ValidationFailed([{"loc": ["query", "from"], "msg": "must not exceed to"}])
    _require_built(session, tenant_id, second)
    proof = _planned(session, tenant_id, lambda p: merkle.consistency_proof(p, first, second))
    return {"from": first, "to": second,
            "from_root": tree_root(session, tenant_id, first).hex(),
            "to_root": tree_root(session, tenant_id, second).hex(),
            "proof": [h.hex() for h in proof]}


# ----------------------------------------------------------------------------- checkpoints


def signing_key(keyring: Keyring) -> tuple[str, Ed25519PrivateKey]:
    """The current checkpoint signing key and its id."""
    kv = keyring.current(SIGNING_PURPOSE)
    key = Ed25519PrivateKey.from_private_bytes(kv.material)
    return f"ed25519:{public_key_b64(key.public_key())[:16]}", key


def public_key_b64(pub: Ed25519PublicKey) -> str:
    """Raw Ed25519 public key, base64."""
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return base64.b64encode(pub.public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()


def note_text(tenant_id: str, size: int, root_hex: str, created_at: datetime) -> bytes:
    """The signed text of a checkpoint (one fact per line, like a transparency-log checkpoint)."""
    return (f"guard-audit/{tenant_id}\n{size}\n{base64.b64encode(bytes.fromhex(root_hex)).decode()}\n"
            f"{format_ts(created_at)}\n").encode()


def checkpoint_to_api(cp: AuditCheckpoint, keyring: Keyring | None = None) -> dict[str, Any]:
    """A checkpoint as served and exported (everything an offline verifier needs but the key)."""
    out: dict[str, Any] = {
        "id": cp.id, "tenant_id": cp.tenant_id, "tree_size": cp.tree_size,
        "root_hash": cp.root_hash, "created_at": format_ts(cp.created_at),
        "key_id": cp.key_id, "signature": cp.signature,
        "note": note_text(cp.tenant_id, cp.tree_size, cp.root_hash, cp.created_at).decode(),
    }
    if keyring is not None:
        out["public_key"] = public_key_b64(signing_key(keyring)[1].public_key())
    return out


def latest_checkpoint(session: Session, tenant_id: str) -> AuditCheckpoint | None:
    """The newest checkpoint of a tenant."""
    return session.execute(select(AuditCheckpoint).where(AuditCheckpoint.tenant_id == tenant_id)
                           .order_by(AuditCheckpoint.tree_size.desc(),
                                     AuditCheckpoint.created_at.desc()).limit(1)).scalar_one_or_none()


def create_checkpoint(session: Session, tenant_id: str, *, keyring: Keyring, clock: Clock,
                      verified_through: int) -> AuditCheckpoint:
    """Extend the tree to the verified part of the chain and sign its root.

    Only verified events are covered, and a new checkpoint must be consistent with (and never
    smaller than) the last one: history cannot be rewritten between two checkpoints unnoticed.
    """
    size = extend_tree(session, tenant_id, verified_through)
    last = latest_checkpoint(session, tenant_id)
    if last is not None:
        if size < last.tree_size:
            raise Conflict("the tree is smaller than the last checkpoint", code="checkpoint_backwards")
        if size == last.tree_size:
            return last
        proof = _planned(session, tenant_id, lambda p: merkle.consistency_proof(p, last.tree_size, size))
        if not merkle.verify_consistency(last.tree_size, size, bytes.fromhex(last.root_hash),
                                         tree_root(session, tenant_id, size), proof):
            raise Conflict("the tree is not consistent with the last checkpoint",
                           code="checkpoint_inconsistent")
    root_hex = tree_root(session, tenant_id, size).hex()
    now = clock.now()
    key_id, key = signing_key(keyring)
    sig = key.sign(note_text(tenant_id, size, root_hex, now))
    cp = AuditCheckpoint(id=new_id("cp"), tenant_id=tenant_id, tree_size=size, root_hash=root_hex,
                         created_at=now, key_id=key_id, signature=base64.b64encode(sig).decode())
    session.add(cp)
    session.flush()
    return cp


def verify_checkpoint(cp: dict[str, Any], public_key_b64_: str) -> bool:
    """Check a checkpoint's signature with a raw base64 Ed25519 public key."""
    pub = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key_b64_))
    created = datetime.fromisoformat(cp["created_at"].replace("Z", "+00:00"))
    try:
        pub.verify(base64.b64decode(cp["signature"]),
                   note_text(cp["tenant_id"], int(cp["tree_size"]), cp["root_hash"], created))
    except (InvalidSignature, ValueError):
        return False
    return True


def verified_through(session: Session, tenant_id: str) -> int:
    """The watermark seq (0 if never verified)."""
    wm = session.get(AuditWatermark, tenant_id)
    return wm.seq if wm else 0


# ----------------------------------------------------------------------------- witnesses


def set_witnesses(session: Session, tenant_id: str, urls: list[str], clock: Clock) -> list[str]:
    """Replace a tenant's witness URLs."""
    for u in urls:
        if not u.startswith(("https://", "http://")):
            raise ValidationFailed([{"loc": ["body", "urls"], "msg": "witness URLs must be http(s)"}])
    existing = {w.url: w for w in session.execute(select(AuditWitness).where(
        AuditWitness.tenant_id == tenant_id)).scalars()}
    for url, w in existing.items():
        if url not in urls:
            session.delete(w)
    for url in urls:
        if url not in existing:
            session.add(AuditWitness(tenant_id=tenant_id, url=url, created_at=clock.now()))
    session.flush()
    return sorted(urls)


def witnesses(session: Session, tenant_id: str) -> list[str]:
    """A tenant's witness URLs."""
    return sorted(session.execute(select(AuditWitness.url).where(
        AuditWitness.tenant_id == tenant_id)).scalars())


@dataclass(frozen=True)
class Delivery:
    """One checkpoint to deliver to one witness."""

    checkpoint: dict[str, Any]
    url: str


def pending_deliveries(session: Session, tenant_id: str | None = None,
                       max_attempts: int = 20) -> list[Delivery]:
    """Checkpoints some witness has not acknowledged yet (newest checkpoint per tenant only)."""
    tenants = [tenant_id] if tenant_id else list(session.execute(
        select(AuditWitness.tenant_id).distinct()).scalars())
    out: list[Delivery] = []
    for t in tenants:
        cp = latest_checkpoint(session, t)
        if cp is None:
            continue
        done = {r.url: r for r in session.execute(select(CheckpointReceipt).where(
            CheckpointReceipt.checkpoint_id == cp.id)).scalars()}
        for url in witnesses(session, t):
            r = done.get(url)
            if r is None or (not r.ok and r.attempts < max_attempts):
                out.append(Delivery(checkpoint_to_api(cp), url))
    return out


def deliver(deliveries: list[Delivery], *, public_key: str, timeout: float = 5.0) -> list[dict[str, Any]]:
    """POST each checkpoint to its witness (no database transaction is open here)."""
    import httpx

    results = []
    with httpx.Client(timeout=timeout, follow_redirects=False) as client:
        for d in deliveries:
            try:
                resp = client.post(d.url, json={"checkpoint": d.checkpoint, "public_key": public_key})
                results.append({"checkpoint_id": d.checkpoint["id"], "url": d.url,
                                "ok": 200 <= resp.status_code < 300, "status": resp.status_code,
                                "response": resp.text[:4000]})
            except httpx.HTTPError as exc:
                results.append({"checkpoint_id": d.checkpoint["id"], "url": d.url, "ok": False,
                                "status": None, "response": type(exc).__name__})
    return results


def record_receipts(session: Session, results: list[dict[str, Any]], clock: Clock) -> None:
    """Store what witnesses answered."""
    for r in results:
        row = session.get(CheckpointReceipt, (r["checkpoint_id"], r["url"]))
        if row is None:
            row = CheckpointReceipt(checkpoint_id=r["checkpoint_id"], url=r["url"], attempts=0,
                                    ok=False, attempted_at=clock.now())
            session.add(row)
        row.ok, row.status, row.response = r["ok"], r["status"], r["response"]
        row.attempts += 1
        row.attempted_at = clock.now()
    session.flush()


def receipts(session: Session, checkpoint_id: str) -> list[dict[str, Any]]:
    """Witness receipts of a checkpoint."""
    return [{"url": r.url, "ok": r.ok, "status": r.status, "response": r.response,
             "attempts": r.attempts, "attempted_at": format_ts(r.attempted_at)}
            for r in session.execute(select(CheckpointReceipt).where(
                CheckpointReceipt.checkpoint_id == checkpoint_id)
                .order_by(CheckpointReceipt.url)).scalars()]


# ----------------------------------------------------------------------------- export


def seq_range(session: Session, tenant_id: str, start: datetime | None, end: datetime | None,
              upto: int) -> tuple[int, int]:
    """The contiguous seq range [a, b] of events with start <= ts < end, within the first `upto`."""
    q = select(AuditEvent.seq).where(AuditEvent.tenant_id == tenant_id, AuditEvent.seq <= upto)
    lo = q.order_by(AuditEvent.seq)
    hi = q.order_by(AuditEvent.seq.desc())
    if start is not None:
        lo = lo.where(AuditEvent.ts >= start)
        hi = hi.where(AuditEvent.ts >= start)
    if end is not None:
        lo = lo.where(AuditEvent.ts < end)
        hi = hi.where(AuditEvent.ts < end)
    a = session.execute(lo.limit(1)).scalar_one_or_none()
    b = session.execute(hi.limit(1)).scalar_one_or_none()
    if a is None or b is None:
        raise NotFound("no audit events in that range")
    return a, b


def export_header(session: Session, tenant_id: str, cp: AuditCheckpoint, a: int, b: int,
                  public_key: str) -> dict[str, Any]:
    """What an offline verifier needs besides the events: the checkpoint and a range proof."""
    proof = _planned(session, tenant_id, lambda p: merkle.range_proof(p, a - 1, b, 0, cp.tree_size))
    prev = GENESIS if a == 1 else session.execute(select(AuditEvent.hash).where(
        AuditEvent.tenant_id == tenant_id, AuditEvent.seq == a - 1)).scalar_one()
    return {"type": "header", "format": "guard-audit-export/1", "tenant_id": tenant_id,
            "from_seq": a, "to_seq": b, "prev_hash": prev,
            "checkpoint": checkpoint_to_api(cp), "public_key": public_key,
            "range_proof": [h.hex() for h in proof]}


def iter_events(session: Session, tenant_id: str, a: int, b: int) -> Iterator[dict[str, Any]]:
    """Events a..b in seq order, read in batches (constant memory)."""
    cols = [getattr(AuditEvent, c) for c in (*SERVED, "hash", "pruned_at")]
    last = a - 1
    while last < b:
        # Plain rows, not ORM objects: nothing accumulates in the session's identity map.
        rows = session.execute(select(*cols).where(
            AuditEvent.tenant_id == tenant_id, AuditEvent.seq > last, AuditEvent.seq <= b)
            .order_by(AuditEvent.seq).limit(_BATCH)).all()
        if not rows:
            return
        for r in rows:
            yield event_to_api(r)
        last = rows[-1].seq


CSV_FIELDS = [*SERVED, "hash", "pruned"]


def render(header: dict[str, Any], events: Iterable[dict[str, Any]], fmt: str) -> Iterator[str]:
    """Export lines: JSON lines, or CSV whose first line is `#` + the JSON header."""
    if fmt == "jsonl":
        yield json.dumps(header, separators=(",", ":")) + "\n"
        for ev in events:
            yield json.dumps({"type": "event", **ev}, separators=(",", ":"), sort_keys=True) + "\n"
        return
    yield "#" + json.dumps(header, separators=(",", ":")) + "\n"
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for ev in events:
        writer.writerow({k: json.dumps(ev[k], separators=(",", ":"), sort_keys=True)
                         if k in ("reasons", "details") else ev[k] for k in CSV_FIELDS})
        yield buf.getvalue()
        buf.seek(0)
        buf.truncate()
    yield buf.getvalue()


# ----------------------------------------------------------------------------- offline verifier


@dataclass
class ExportCheck:
    """Result of verifying an export file offline."""

    ok: bool
    events: int
    message: str


def _parse_export(lines: Iterable[str]) -> tuple[dict[str, Any], Iterator[dict[str, Any]]]:
    it = iter(lines)
    first = next(it, "")
    if first.startswith("#"):
        header = json.loads(first[1:])
        reader = csv.DictReader(it)

        def rows() -> Iterator[dict[str, Any]]:
            for row in reader:
                ev: dict[str, Any] = {}
                for k in CSV_FIELDS:
                    v = row.get(k)
                    if k in ("reasons", "details"):
                        ev[k] = json.loads(v) if v else None
                    elif k == "seq":
                        ev[k] = int(v or 0)
                    elif k == "pruned":
                        ev[k] = v == "True"
                    else:
                        ev[k] = v if v != "" else None
                yield ev

        return header, rows()
    header = json.loads(first)
    return header, (json.loads(line) for line in it if line.strip())


def verify_export(lines: Iterable[str], checkpoint: dict[str, Any], public_key: str) -> ExportCheck:
    """Check an export against a trusted checkpoint and key, with no database."""
    if not verify_checkpoint(checkpoint, public_key):
        return ExportCheck(False, 0, "the checkpoint's signature does not verify with that key")
    header, events = _parse_export(lines)
    if header.get("format") != "guard-audit-export/1":
        return ExportCheck(False, 0, "not a Guard audit export")
    size = int(checkpoint["tree_size"])
    made_for = header["checkpoint"]
    if (made_for["tree_size"], made_for["root_hash"], header["tenant_id"]) != \
            (size, checkpoint["root_hash"], checkpoint["tenant_id"]):
        return ExportCheck(False, 0, "the export was made against another checkpoint")
    a, b = int(header["from_seq"]), int(header["to_seq"])
    prev = header["prev_hash"]
    leaves: list[bytes] = []
    expected = a
    for ev in events:
        if ev.get("seq") != expected:
            return ExportCheck(False, len(leaves), f"expected seq {expected}, found {ev.get('seq')}")
        if not ev.get("pruned"):
            body = {k: ev[k] for k in SERVED}
            if chain_hash(prev, body) != ev["hash"]:
                return ExportCheck(False, len(leaves), f"event {expected} does not match its hash")
        prev = ev["hash"]
        leaves.append(merkle.leaf_hash(bytes.fromhex(ev["hash"])))
        expected += 1
    if expected != b + 1:
        return ExportCheck(False, len(leaves), f"the export ends at {expected - 1}, not {b}")
    rebuilt = merkle.root_from_range(leaves, a - 1, b, size,
                                     [bytes.fromhex(h) for h in header["range_proof"]])
    if rebuilt is None or rebuilt.hex() != checkpoint["root_hash"]:
        return ExportCheck(False, len(leaves), "the events are not those the checkpoint's tree holds")
    return ExportCheck(True, len(leaves), f"OK: events {a}..{b} are in the signed tree of {size}")


def head_seq(session: Session, tenant_id: str) -> int:
    """The chain head's seq."""
    h = session.get(AuditHead, tenant_id)
    return h.seq if h else 0
