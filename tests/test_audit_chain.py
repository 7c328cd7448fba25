"""The audit chain: concurrent appends stay gap-free; every kind of tampering is named."""

from __future__ import annotations

import multiprocessing as mp
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from flask import Flask
from sqlalchemy import select, text

from guard.audit import service
from guard.audit.models import AuditEvent, Subject, SubjectIdentifier
from guard.clock import FixedClock, SystemClock
from guard.context import Caller, operator
from guard.db import make_engine, make_session_factory, transaction
from guard.runtime import Runtime
from tests.conftest import TenantKeys, new_tenant

pytestmark = pytest.mark.integration


def _append_many(rt: Runtime, tenant_id: str, n: int, **kw: Any) -> None:
    for i in range(n):
        with transaction(rt.sessions) as s:
            service.append(s, caller=operator(tenant_id), action="test.append", outcome="ok",
                           clock=rt.clock, details={"i": i}, **kw)


def _verify(rt: Runtime, tenant_id: str, full: bool = True) -> service.VerifyResult:
    with transaction(rt.sessions) as s:
        return service.verify(s, tenant_id, clock=rt.clock, full=full)


def _seqs(rt: Runtime, tenant_id: str) -> list[int]:
    with transaction(rt.sessions) as s:
        return list(s.execute(select(AuditEvent.seq).where(AuditEvent.tenant_id == tenant_id)
                              .order_by(AuditEvent.seq)).scalars())


def test_threads_append_gap_free(rt: Runtime, tenant: TenantKeys) -> None:
    errors: list[BaseException] = []

    def work() -> None:
        try:
            _append_many(rt, tenant.id, 15)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert _seqs(rt, tenant.id) == list(range(1, 121))
    res = _verify(rt, tenant.id)
    assert res.ok and res.verified_through == 120, res


def _process_worker(url: str, tenant_id: str, n: int, start: Any) -> None:
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    clock = SystemClock()
    start.wait(30)
    for i in range(n):
        with transaction(sessions) as s:
            service.append(s, caller=Caller(tenant_id=tenant_id, key_id=None, role="test"),
                           action="test.process", outcome="ok", clock=clock, details={"i": i})
            # A second chain in the same transaction: heads are locked in a fixed order.
            service.append(s, caller=Caller(tenant_id=service.SYSTEM_TENANT_ID, key_id=None,
                                            role="test"), action="test.process", outcome="ok",
                           clock=clock)
    engine.dispose()


def test_processes_append_gap_free(rt: Runtime, tenant: TenantKeys) -> None:
    ctx = mp.get_context("spawn")
    start = ctx.Event()
    procs = [ctx.Process(target=_process_worker, args=(rt.settings.database_url, tenant.id, 40, start))
             for _ in range(2)]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    assert _seqs(rt, tenant.id) == list(range(1, 81))
    assert _verify(rt, tenant.id).ok
    assert _verify(rt, service.SYSTEM_TENANT_ID).ok


# ----------------------------------------------------------------------------- tampering


def _exec(rt: Runtime, sql: str, **params: Any) -> None:
    with rt.engine.begin() as conn:
        conn.execute(text(sql), params)


def _row(rt: Runtime, tenant_id: str, seq: int) -> dict[str, Any]:
    with rt.engine.connect() as conn:
        return dict(conn.execute(text("SELECT * FROM audit_events WHERE tenant_id=:t AND seq=:s"),
                                 {"t": tenant_id, "s": seq}).mappings().one())


@pytest.fixture
def chain(rt: Runtime) -> str:
    """A fresh tenant with a 10-event chain."""
    t = new_tenant(rt)
    # new_tenant itself logs nothing; give the events varied content.
    for i in range(10):
        with transaction(rt.sessions) as s:
            service.append(s, caller=Caller(tenant_id=t.id, key_id=f"key_{i}", role="agent",
                                            actor=f"actor-{i}", request_id=f"req_{i}"),
                           action="test.tamper", outcome="allow" if i % 2 else "deny",
                           clock=rt.clock, reasons=[f"r{i}"], policy=rt.policies.base,
                           subject=f"sp_{i}", details={"n": i, "nested": {"k": [i, "v"]}})
    assert _verify(rt, t.id).ok
    return t.id


EDITS = {
    "id": "'evt_edited_' || tenant_id", "ts": "ts", "key_id": "'key_forged'", "role": "'admin'",
    "actor": "'mallory'", "action": "'test.other'", "outcome": "'ok'", "reasons": "reasons",
    "policy_version": "'0000'", "request_id": "'req_forged'", "subject": "'sp_other'",
    "details": "details",
}


@pytest.mark.parametrize("column", sorted(EDITS))
def test_editing_any_served_column_is_detected(rt: Runtime, chain: str, column: str) -> None:
    row = _row(rt, chain, 5)
    if column == "ts":
        value: Any = row["ts"] + timedelta(seconds=1) if not isinstance(row["ts"], str) else \
            row["ts"].replace(":", ":", 1)[:-1] + ("1" if row["ts"][-1] != "1" else "2")
        _exec(rt, "UPDATE audit_events SET ts=:v WHERE tenant_id=:t AND seq=5", v=value, t=chain)
    elif column in ("reasons", "details"):
        newval = '["forged"]' if column == "reasons" else '{"n": 99}'
        _exec(rt, f"UPDATE audit_events SET {column}=:v WHERE tenant_id=:t AND seq=5", v=newval, t=chain)
    else:
        _exec(rt, f"UPDATE audit_events SET {column}={EDITS[column]} WHERE tenant_id=:t AND seq=5",
              t=chain)
    res = _verify(rt, chain)
    assert not res.ok and res.first_bad_seq == 5 and res.problem == "edited", res


def test_editing_the_hash_is_detected(rt: Runtime, chain: str) -> None:
    _exec(rt, "UPDATE audit_events SET hash=:h WHERE tenant_id=:t AND seq=5", h="ab" * 32, t=chain)
    res = _verify(rt, chain)
    assert (res.ok, res.first_bad_seq, res.problem) == (False, 5, "edited")


def test_deleting_a_row_is_detected(rt: Runtime, chain: str) -> None:
    _exec(rt, "DELETE FROM audit_events WHERE tenant_id=:t AND seq=5", t=chain)
    res = _verify(rt, chain)
    assert (res.ok, res.first_bad_seq, res.problem) == (False, 5, "deleted")


def test_deleting_and_renumbering_is_detected(rt: Runtime, chain: str) -> None:
    _exec(rt, "DELETE FROM audit_events WHERE tenant_id=:t AND seq=5", t=chain)
    for seq in range(6, 11):
        _exec(rt, "UPDATE audit_events SET seq=:n WHERE tenant_id=:t AND seq=:s", n=seq - 1, s=seq, t=chain)
    _exec(rt, "UPDATE audit_heads SET seq=9 WHERE tenant_id=:t", t=chain)
    res = _verify(rt, chain)
    assert (res.ok, res.first_bad_seq, res.problem) == (False, 5, "deleted")


def test_deleting_the_tail_is_detected(rt: Runtime, chain: str) -> None:
    _exec(rt, "DELETE FROM audit_events WHERE tenant_id=:t AND seq>=9", t=chain)
    res = _verify(rt, chain)
    assert (res.ok, res.first_bad_seq, res.problem) == (False, 9, "deleted")


def _insert_copy(rt: Runtime, tenant_id: str, src_seq: int, new_seq: int, new_id: str,
                 hash_: str | None = None) -> None:
    row = _row(rt, tenant_id, src_seq)
    row.update(seq=new_seq, id=new_id)
    if hash_:
        row["hash"] = hash_
    cols = ", ".join(row)
    vals = ", ".join(f":{c}" for c in row)
    with rt.engine.begin() as conn:
        conn.execute(text(f"INSERT INTO audit_events ({cols}) VALUES ({vals})"), row)


def test_inserting_beyond_the_head_is_detected(rt: Runtime, chain: str) -> None:
    _insert_copy(rt, chain, 10, 11, f"evt_injected_{chain}")
    res = _verify(rt, chain)
    assert (res.ok, res.first_bad_seq, res.problem) == (False, 11, "inserted")


def test_inserting_in_the_middle_is_detected(rt: Runtime, chain: str) -> None:
    # Shift 5..10 up by one (top first, the key is unique), then put a forged row at 5 whose
    # hash is even computed correctly from seq 4: the chain still breaks at the shifted rows.
    for seq in range(10, 4, -1):
        _exec(rt, "UPDATE audit_events SET seq=:n WHERE tenant_id=:t AND seq=:s", n=seq + 1, s=seq, t=chain)
    with transaction(rt.sessions) as s:
        prev = s.execute(select(AuditEvent).where(AuditEvent.tenant_id == chain, AuditEvent.seq == 4)).scalar_one()
        forged = s.execute(select(AuditEvent).where(AuditEvent.tenant_id == chain, AuditEvent.seq == 6)).scalar_one()
        d = {k: getattr(forged, k) for k in service.SERVED}
        d.update(seq=5, id=f"evt_forged_{chain}", ts=service.format_ts(d["ts"]))
        good_hash = service.chain_hash(prev.hash, d)
    _insert_copy(rt, chain, 6, 5, f"evt_forged_{chain}", good_hash)
    _exec(rt, "UPDATE audit_heads SET seq=11 WHERE tenant_id=:t", t=chain)
    res = _verify(rt, chain)
    assert (res.ok, res.first_bad_seq, res.problem) == (False, 5, "inserted"), res


def test_inserting_a_bad_row_in_the_middle_is_detected(rt: Runtime, chain: str) -> None:
    for seq in range(10, 4, -1):
        _exec(rt, "UPDATE audit_events SET seq=:n WHERE tenant_id=:t AND seq=:s", n=seq + 1, s=seq, t=chain)
    _insert_copy(rt, chain, 6, 5, f"evt_forged_{chain}", "cd" * 32)
    _exec(rt, "UPDATE audit_heads SET seq=11 WHERE tenant_id=:t", t=chain)
    res = _verify(rt, chain)
    assert (res.ok, res.first_bad_seq, res.problem) == (False, 5, "inserted"), res


def test_swapping_rows_is_detected(rt: Runtime, chain: str) -> None:
    _exec(rt, "UPDATE audit_events SET seq=-1 WHERE tenant_id=:t AND seq=5", t=chain)
    _exec(rt, "UPDATE audit_events SET seq=5 WHERE tenant_id=:t AND seq=6", t=chain)
    _exec(rt, "UPDATE audit_events SET seq=6 WHERE tenant_id=:t AND seq=-1", t=chain)
    res = _verify(rt, chain)
    assert (res.ok, res.first_bad_seq, res.problem) == (False, 5, "reordered"), res


def test_cli_verify_names_the_first_bad_seq(rt: Runtime, chain: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from guard.cli import cli

    s = rt.settings
    for var, value in (("GUARD_DATABASE_URL", s.database_url), ("GUARD_INSTANCE_DIR", str(s.instance_dir)),
                       ("GUARD_KEYRING_PATH", str(s.keyring_file))):
        monkeypatch.setenv(var, value)
    runner = CliRunner()
    ok = runner.invoke(cli, ["audit", "verify", "--tenant", chain])
    assert ok.exit_code == 0 and f"{chain}: OK 10 events" in ok.output, ok.output
    _exec(rt, "UPDATE audit_events SET actor='mallory' WHERE tenant_id=:t AND seq=3", t=chain)
    # The watermark makes a plain run incremental; --full re-checks the verified range.
    assert runner.invoke(cli, ["audit", "verify", "--tenant", chain]).exit_code == 0
    bad = runner.invoke(cli, ["audit", "verify", "--tenant", chain, "--full"])
    assert bad.exit_code == 1 and "BROKEN at seq 3: edited" in bad.output, bad.output


def test_incremental_verify_checks_only_the_tail(rt: Runtime, chain: str) -> None:
    first = _verify(rt, chain, full=False)
    assert first.ok and first.verified_through == 10
    again = _verify(rt, chain, full=False)
    assert again.ok and again.checked == 0
    _append_many(rt, chain, 3)
    tail = _verify(rt, chain, full=False)
    assert tail.ok and tail.checked == 3 and tail.verified_through == 13
    # Rewriting the watermark event (e.g. recomputing hashes after an edit) is caught at once.
    _exec(rt, "UPDATE audit_events SET hash=:h WHERE tenant_id=:t AND seq=13", h="ef" * 32, t=chain)
    res = _verify(rt, chain, full=False)
    assert not res.ok and res.first_bad_seq == 13


# ----------------------------------------------------------------------------- pruning, subjects


def test_pruned_ranges_still_verify(rt: Runtime, clock: FixedClock) -> None:
    t = new_tenant(rt)
    _append_many(rt, t.id, 6)
    clock.advance(days=500)
    _append_many(rt, t.id, 4)
    # Nothing is pruned before it was verified.
    with transaction(rt.sessions) as s:
        assert service.prune(s, t.id, before=clock.now() - timedelta(days=400)) == (0, None)
    assert _verify(rt, t.id, full=False).ok
    from guard.jobs import run_job

    result = run_job(rt, "audit.prune", force=True)
    assert result is not None and result["pruned"] >= 6
    with transaction(rt.sessions) as s:
        rows = s.execute(select(AuditEvent).where(AuditEvent.tenant_id == t.id)
                         .order_by(AuditEvent.seq)).scalars().all()
    assert [r.pruned_at is not None for r in rows[:6]] == [True] * 6
    assert all(r.action is None and r.details is None for r in rows[:6])
    assert rows[-1].action == "audit.prune" and rows[-1].details["count"] == 6
    res = _verify(rt, t.id)
    assert res.ok and res.verified_through == 11, res
    # A pruned event's hash is still bound by its successor.
    _exec(rt, "UPDATE audit_events SET hash=:h WHERE tenant_id=:t AND seq=6", h="aa" * 32, t=t.id)
    bad = _verify(rt, t.id)
    assert not bad.ok and bad.first_bad_seq == 6


def test_erased_subject_no_longer_links(app: Flask, rt: Runtime, tenant: TenantKeys) -> None:
    idx = rt.keyring.current("subject_index").material
    with transaction(rt.sessions) as s:
        p1 = service.subject_pseudonym(s, index_key=idx, tenant_id=tenant.id, clock=rt.clock,
                                       identifiers={"customer_ref": "C-1", "phone": "(415) 555-0100"})
        service.append(s, caller=operator(tenant.id), action="test.subject", outcome="ok",
                       clock=rt.clock, subject=p1)
    with transaction(rt.sessions) as s:
        # Another identifier of the same person, and another format of the same phone.
        p2 = service.subject_pseudonym(s, index_key=idx, tenant_id=tenant.id, clock=rt.clock,
                                       identifiers={"phone": "+1 415-555-0100", "email": "A@x.example"})
        service.append(s, caller=operator(tenant.id), action="test.subject", outcome="ok",
                       clock=rt.clock, subject=p2)
    assert p1 == p2 and p1 is not None and p1.startswith("sp_")
    client = app.test_client()
    r = client.post("/v1/audit/subjects/resolve", json={"email": "a@X.example"},
                    headers=tenant.headers("auditor"))
    assert r.status_code == 200 and r.get_json()["subject"] == p1
    events = client.get(f"/v1/audit/events?subject={p1}", headers=tenant.headers("auditor")).get_json()
    # The auditor's own look-up of this person is filed under the same pseudonym.
    assert [e["action"] for e in events["events"]] == ["test.subject", "test.subject",
                                                       "audit.subject.resolve"]
    with transaction(rt.sessions) as s:
        stored = s.execute(select(SubjectIdentifier.index_hash)).scalars().all()
        assert not any("4155550100" in h or "@" in h for h in stored)
        assert service.erase_subject(s, index_key=idx, tenant_id=tenant.id, clock=rt.clock,
                                     identifiers={"customer_ref": "C-1"}) == 1
    for ident in ({"customer_ref": "C-1"}, {"phone": "+14155550100"}, {"email": "a@x.example"}):
        r = client.post("/v1/audit/subjects/resolve", json=ident, headers=tenant.headers("auditor"))
        assert r.get_json()["subject"] is None
    with transaction(rt.sessions) as s:
        subj = s.execute(select(Subject).where(Subject.tenant_id == tenant.id)).scalars().all()
        assert [x.secret for x in subj] == [None]
        assert not s.execute(select(SubjectIdentifier).where(
            SubjectIdentifier.tenant_id == tenant.id)).scalars().all()
    assert _verify(rt, tenant.id).ok


def test_event_search_filters_paginates_and_is_audited(app: Flask, tenant: TenantKeys) -> None:
    client = app.test_client()
    h = tenant.headers("auditor")
    client.get("/v1/keys", headers=tenant.headers("agent"))  # a denial to find
    page = client.get("/v1/audit/events?outcome=deny", headers=h).get_json()
    assert [e["action"] for e in page["events"]] == ["auth.key.list"]
    assert page["events"][0]["reasons"] == ["role_not_permitted"]
    seen: list[int] = []
    cursor = None
    while True:
        url = "/v1/audit/events?limit=2" + (f"&cursor={cursor}" if cursor else "")
        body = client.get(url, headers=h).get_json()
        seen += [e["seq"] for e in body["events"]]
        cursor = body["next_cursor"]
        if not cursor:
            break
    assert seen == sorted(seen) and seen[0] == 1 and len(seen) == len(set(seen))
    reads = client.get("/v1/audit/events?action=audit.events.*", headers=h).get_json()["events"]
    assert len(reads) >= 2 and all(e["role"] == "auditor" for e in reads)
    other = client.get("/v1/audit/events", headers=new_tenant_headers(app)).get_json()
    assert all(e["tenant_id"] != tenant.id for e in other["events"])


def new_tenant_headers(app: Flask) -> dict[str, str]:
    return new_tenant(app.extensions["guard"]).headers("auditor")


def test_details_never_hold_secrets(rt: Runtime, tenant: TenantKeys) -> None:
    with transaction(rt.sessions) as s:
        ev = service.append(s, caller=operator(tenant.id), action="test.scrub", outcome="ok",
                            clock=rt.clock, details={"cvc": "123", "otp": "654321", "phone": "4155550100",
                                                     "note": "card 4242 4242 4242 4242 ok",
                                                     "nested": {"answer": "fluffy", "n": 1.5}})
    assert ev.details == {"note": "card [CARD ****4242] ok", "nested": {"n": "1.5"}}


def test_keyring_file_is_never_inside_the_repo(rt: Runtime) -> None:
    assert not Path(rt.settings.keyring_file).resolve().is_relative_to(Path(__file__).parents[1])
