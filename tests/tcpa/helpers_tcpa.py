"""Shared helpers of the outbound-call tests (importable from test modules and workers)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from guard.db import transaction
from guard.runtime import Runtime
from guard.tcpa import registry


def load_list(rt: Runtime, list_name: str, numbers: list[str], *, file_date: datetime,
              tenant_id: str | None = None, changes: bool = False, tmp: Path) -> str:
    """Import a list the way `guard dnc import` does; returns the new version id."""
    path = tmp / f"{list_name.replace(':', '_')}.txt"
    path.write_text("\n".join(numbers) + "\n")
    parsed = registry.parse_file(path, changes=changes)
    with transaction(rt.sessions) as session:
        if list_name == "internal":
            assert tenant_id is not None
            registry.import_internal(session, tenant_id=tenant_id, parsed=parsed, clock=rt.clock)
            return "internal"
        ver = registry.import_registry(session, list_name=list_name, parsed=parsed, changes=changes,
                                       tenant_id=tenant_id, file_date=file_date, clock=rt.clock)
        return ver.id
