"""Audit jobs: incremental chain verification and retention pruning."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from guard.audit import service
from guard.context import operator
from guard.db import transaction
from guard.errors import GuardError
from guard.jobs import register
from guard.runtime import Runtime

log = logging.getLogger(__name__)


@register("audit.verify", every=300, description="verify every tenant's chain from its watermark")
def verify_all(rt: Runtime, full: bool = False) -> dict[str, Any]:
    """Verify every chain (incrementally unless `full`); a broken chain is logged and audited."""
    with transaction(rt.sessions) as session:
        tenants = service.tenants_with_chains(session)
    out: dict[str, Any] = {"tenants": len(tenants), "broken": []}
    for tenant_id in tenants:
        with transaction(rt.sessions) as session:
            res = service.verify(session, tenant_id, clock=rt.clock, full=full)
        if res.ok:
            continue
        log.error("audit chain of %s broken at %s: %s", tenant_id, res.first_bad_seq, res.message)
        out["broken"].append({"tenant_id": tenant_id, "seq": res.first_bad_seq})
        try:
            with transaction(rt.sessions) as session:
                service.append(session, caller=operator(tenant_id), action="audit.verify",
                               outcome="error", clock=rt.clock, reasons=[f"chain_{res.problem}"],
                               policy=rt.policies.base, details={"first_bad_seq": res.first_bad_seq})
        except Exception:
            log.exception("could not record the broken chain of %s in itself", tenant_id)
    return out


@register("audit.verify_full", every=86400,
          description="re-verify every chain from its first event (edits below the watermark)")
def verify_all_full(rt: Runtime) -> dict[str, Any]:
    """Daily full walk: incremental runs only look past the watermark."""
    return verify_all(rt, full=True)


@register("audit.prune", every=86400, description="drop bodies of audit events past retention")
def prune_all(rt: Runtime, batch: int = 1000) -> dict[str, Any]:
    """Prune each tenant's verified events older than its audit retention, in small batches."""
    # A broken chain is evidence: never drop bodies from it until someone has looked.
    broken = {b["tenant_id"] for b in verify_all(rt)["broken"]}
    total = 0
    with transaction(rt.sessions) as session:
        tenants = [t for t in service.tenants_with_chains(session) if t not in broken]
    for tenant_id in tenants:
        while True:
            with transaction(rt.sessions) as session:
                policy = rt.policies_for(session, tenant_id) if tenant_id != service.SYSTEM_TENANT_ID \
                    else rt.policies.base
                cutoff = rt.clock.now() - timedelta(days=policy.audit.retention_days)
                count, upto = service.prune(session, tenant_id, before=cutoff, limit=batch)
                if count:
                    service.append(session, caller=operator(tenant_id), action="audit.prune",
                                   outcome="ok", clock=rt.clock, policy=policy,
                                   details={"count": count, "through_seq": upto,
                                            "before": cutoff.isoformat()})
            total += count
            if count < batch:
                break
    return {"pruned": total, "skipped_broken": sorted(broken)}


@register("audit.checkpoint", every=300,
          description="sign a checkpoint of every verified chain and deliver it to witnesses")
def checkpoint_all(rt: Runtime) -> dict[str, Any]:
    """Checkpoint each tenant's verified chain, then deliver to witnesses outside any transaction."""
    from guard.audit import proofs

    broken = {b["tenant_id"] for b in verify_all(rt)["broken"]}
    with transaction(rt.sessions) as session:
        tenants = [t for t in service.tenants_with_chains(session) if t not in broken]
    made, failed = 0, []
    for tenant_id in tenants:
        try:
            with transaction(rt.sessions) as session:
                upto = proofs.verified_through(session, tenant_id)
                if upto == 0:
                    continue
                last = proofs.latest_checkpoint(session, tenant_id)
                # Periodic checkpoints are not chained as events: the checkpoint table is their
                # record, and an event per run would grow every idle tree forever.
                cp = proofs.create_checkpoint(session, tenant_id, keyring=rt.keyring,
                                              clock=rt.clock, verified_through=upto)
                made += last is None or cp.id != last.id
        except (GuardError, LookupError):
            # A chain damaged below its watermark, or one that no longer extends its last
            # checkpoint: never sign over it; `guard audit verify --full` shows where.
            log.exception("no checkpoint for %s", tenant_id)
            failed.append(tenant_id)
    with transaction(rt.sessions) as session:
        deliveries = proofs.pending_deliveries(session)
    results = proofs.deliver(deliveries, public_key=proofs.public_key_b64(
        proofs.signing_key(rt.keyring)[1].public_key())) if deliveries else []
    if results:
        with transaction(rt.sessions) as session:
            proofs.record_receipts(session, results, rt.clock)
    return {"checkpoints": made, "delivered": sum(r["ok"] for r in results),
            "failed": sum(not r["ok"] for r in results), "skipped_broken": sorted(broken),
            "refused": failed}
