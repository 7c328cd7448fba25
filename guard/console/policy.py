"""policies/console.yaml: console session lifetimes and what the status page shows."""

from __future__ import annotations

from pydantic import Field

from guard.policy import PolicyModel


class ConsolePolicy(PolicyModel):
    """Session deadlines and the denied-decisions chart window."""

    # PCI DSS v4.0 Req. 8.2.8: a session idle for more than 15 minutes must re-authenticate.
    idle_minutes: int = Field(ge=1, le=15)
    # NIST SP 800-63B 4.2.3 (AAL2): re-authenticate at least once per 12 hours of a session.
    max_hours: int = Field(ge=1, le=12)
    chart_days: int = Field(ge=1, le=90)
