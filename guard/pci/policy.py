"""policies/vault.yaml: CVC retention, expiry bounds and the purposes detokenization may serve."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from guard.policy import PolicyModel


class VaultPolicy(PolicyModel):
    """Card vault rules (tenants may shorten the CVC TTL, never lengthen it past 10 minutes)."""

    tenant_overridable: ClassVar[bool] = True

    cvc_ttl_seconds: int = Field(ge=0, le=600)
    max_expiry_years_ahead: int = Field(ge=1, le=50)
    detokenize_purposes: frozenset[str] = Field(min_length=1)
