"""Imports every model module so Base.metadata knows every table (Alembic, tests)."""

from __future__ import annotations

import guard.audit.models
import guard.auth.models
import guard.console.models
import guard.models
import guard.siem.models  # noqa: F401
