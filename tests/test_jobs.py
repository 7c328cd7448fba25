"""Jobs: each run happens once across hosts (database lease); runnable once from the CLI."""

from __future__ import annotations

import threading
from dataclasses import replace

import pytest

from guard import jobs
from guard.clock import FixedClock
from guard.runtime import Runtime

pytestmark = pytest.mark.integration


def test_a_leased_job_runs_once(rt: Runtime, clock: FixedClock, monkeypatch: pytest.MonkeyPatch) -> None:
    entered, release = threading.Event(), threading.Event()
    runs: list[str] = []

    def slow(runtime: Runtime) -> dict[str, int]:
        runs.append(runtime.holder_id)
        entered.set()
        assert release.wait(30)
        return {"ok": 1}

    name = f"test.slow.{id(rt)}"
    jobs.load_jobs()
    monkeypatch.setitem(jobs.JOBS, name, jobs.Job(name, 3600, slow, "test"))
    # A second "host": same database, another holder id.
    other = replace(rt)
    monkeypatch.setattr(type(other), "holder_id", property(
        lambda self: "host-b:1" if self is other else "host-a:1"))
    results: list[object] = []
    t = threading.Thread(target=lambda: results.append(jobs.run_job(rt, name)))
    t.start()
    assert entered.wait(30)
    assert jobs.run_job(other, name) is None  # leased by host A
    assert jobs.run_job(other, name, force=True) is None  # force never overrides a live lease
    release.set()
    t.join(30)
    assert results == [{"ok": 1}] and runs == ["host-a:1"]
    assert jobs.run_job(other, name) is None  # not due again for an hour
    clock.advance(hours=1)
    assert jobs.run_job(other, name) == {"ok": 1}


def test_registered_jobs(rt: Runtime) -> None:
    names = set(jobs.load_jobs())
    assert {"audit.verify", "audit.prune", "auth.unknown_keys"} <= names
    result = jobs.run_job(rt, "audit.verify", force=True)
    assert result is not None and "tenants" in result
