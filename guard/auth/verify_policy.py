"""policies/identity.yaml: caller assurance levels, the level each action needs, abuse limits."""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar, Literal

from pydantic import Field, model_validator

from guard.policy import PolicyModel

Factor = Literal["knowledge", "possession", "caller_id", "email_code"]
Method = Literal["kba", "caller_id", "otp_sms", "totp", "otp_email"]
Attestation = Literal["A", "B", "C"]
METHODS: tuple[Method, ...] = ("kba", "caller_id", "otp_sms", "totp", "otp_email")


class MethodFactors(PolicyModel):
    """Which factor each method provides; only otp_email may change."""

    kba: Literal["knowledge"]
    caller_id: Literal["caller_id"]
    otp_sms: Literal["possession"]
    totp: Literal["possession"]
    otp_email: Literal["email_code", "possession"]

    def of(self, method: str) -> Factor:
        """The factor `method` provides."""
        value = getattr(self, method)
        assert isinstance(value, str)
        return value  # type: ignore[return-value]


class LevelRule(PolicyModel):
    """`level` is reached when every `requires` factor passed, plus one other from `plus_one_of`."""

    level: int = Field(ge=1, le=3)
    requires: frozenset[Factor] = Field(min_length=1)
    plus_one_of: frozenset[Factor] = frozenset()

    def met_by(self, factors: set[Factor]) -> bool:
        """Whether the passed factors meet this rule."""
        if not self.requires <= factors:
            return False
        if not self.plus_one_of:
            return True
        return bool((self.plus_one_of - self.requires) & factors)


class ActionRule(PolicyModel):
    """The level an action needs and, optionally, how recently it must have been reached."""

    level: int = Field(ge=0, le=3)
    fresh_minutes: int | None = Field(default=None, ge=1, le=60)


class CallerIdRules(PolicyModel):
    """Caller-ID evidence accepted (only from a dialer-role key)."""

    attestations: frozenset[Attestation] = Field(min_length=1)

    @model_validator(mode="after")
    def _only_full(self) -> CallerIdRules:
        # B and C mean the carrier does not vouch for the number: never evidence of identity.
        if self.attestations - {"A"}:
            raise ValueError("only attestation A may count as caller-ID evidence")
        return self


class VerificationRules(PolicyModel):
    """Lifetime of a verification."""

    idle_minutes: int = Field(ge=1, le=30)
    max_lifetime_minutes: int = Field(ge=5, le=240)


class KbaRules(PolicyModel):
    """Knowledge-question attempts."""

    max_answers_per_attempt: int = Field(ge=1, le=5)


class OtpRules(PolicyModel):
    """One-time codes sent by SMS or email."""

    digits: int = Field(ge=6, le=8)
    ttl_minutes: int = Field(ge=1, le=10)
    max_sends_per_verification: int = Field(ge=1, le=5)
    destination_sends_per_window: int = Field(ge=1, le=20)
    destination_window_minutes: int = Field(ge=10, le=1440)


class TotpRules(PolicyModel):
    """RFC 6238 time-based codes."""

    step_seconds: int = Field(ge=30, le=60)
    drift_steps: int = Field(ge=0, le=1)


class LimitRules(PolicyModel):
    """Abuse limits: per verification, per customer, per API key."""

    max_failures_per_verification: int = Field(ge=1, le=5)
    customer_failed_verifications: int = Field(ge=3, le=20)
    customer_window_hours: int = Field(ge=1, le=72)
    cooldown_base_minutes: int = Field(ge=1, le=240)
    cooldown_max_minutes: int = Field(ge=15, le=10080)
    max_consecutive_failures: int = Field(ge=10, le=100)  # NIST SP 800-63B 5.2.2: at most 100
    key_window_minutes: int = Field(ge=1, le=60)
    key_distinct_customers: dict[Literal["agent", "ai_agent", "dialer", "supervisor"], int]

    @model_validator(mode="after")
    def _bounds(self) -> LimitRules:
        if self.cooldown_max_minutes < self.cooldown_base_minutes:
            raise ValueError("cooldown_max_minutes must be at least cooldown_base_minutes")
        for role, n in self.key_distinct_customers.items():
            if not 1 <= n <= 10000:
                raise ValueError(f"key_distinct_customers.{role} must be 1..10000")
        return self


class IdentityPolicy(PolicyModel):
    """policies/identity.yaml."""

    tenant_overridable: ClassVar[bool] = True

    method_factors: MethodFactors
    levels: tuple[LevelRule, ...] = Field(min_length=1)
    actions: dict[str, ActionRule]
    no_verification_by_law: frozenset[str] = frozenset()
    caller_id: CallerIdRules
    verification: VerificationRules
    kba: KbaRules
    otp: OtpRules
    totp: TotpRules
    limits: LimitRules

    # Floors a tenant override can raise but never lower (the design: payments, refunds,
    # contact changes and privacy requests need a possession factor plus one more).
    MIN_ACTION_LEVELS: ClassVar[dict[str, int]] = {
        "disclose_account": 1, "charge": 2, "refund": 2, "change_contact": 2, "privacy_request": 2}

    @model_validator(mode="after")
    def _consistent(self) -> IdentityPolicy:
        for rule in self.levels:
            # Caller ID alone never exceeds level 1: it can be spoofed or talked into.
            if rule.requires == {"caller_id"} and not rule.plus_one_of and rule.level > 1:
                raise ValueError("a rule on caller_id alone may not exceed level 1")
            # Level 2 and above always means a possession factor plus one other factor.
            if rule.level >= 2 and ("possession" not in rule.requires or not
                                    ((rule.requires | rule.plus_one_of) - {"possession"})):
                raise ValueError(f"a level {rule.level} rule needs possession plus another factor")
        for name, floor in self.MIN_ACTION_LEVELS.items():
            if name in self.actions and self.actions[name].level < floor:
                raise ValueError(f"actions.{name}: level may not be below {floor}")
        if "change_contact" in self.actions and self.actions["change_contact"].fresh_minutes is None:
            raise ValueError("actions.change_contact: fresh_minutes is required")
        top = max(r.level for r in self.levels)
        for name, action in self.actions.items():
            if action.level > top:
                raise ValueError(f"actions.{name}: level {action.level} is unreachable")
            if action.level == 0 and name not in self.no_verification_by_law:
                raise ValueError(f"actions.{name}: only actions in no_verification_by_law may need level 0")
        for required in self.MIN_ACTION_LEVELS:
            if required not in self.actions:
                raise ValueError(f"actions.{required} is missing")
        return self

    def level_for(self, methods: Iterable[str]) -> int:
        """The highest level the passed methods reach."""
        factors = {self.method_factors.of(m) for m in methods}
        return max((r.level for r in self.levels if r.met_by(factors)), default=0)
