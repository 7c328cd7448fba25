"""Imports every model module so Base.metadata knows every table (Alembic, tests)."""

from __future__ import annotations

import guard.audit.models
import guard.auth.models
import guard.auth.verify_models
import guard.console.models
import guard.models
import guard.pci.models
import guard.siem.models
import guard.tcpa.models  # noqa: F401
