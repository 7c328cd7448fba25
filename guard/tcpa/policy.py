"""policies/outbound.yaml: the model Guard validates the outbound calling rules against."""

from __future__ import annotations

from datetime import date, time
from typing import ClassVar, Literal

from pydantic import Field, model_validator

from guard.policy import PolicyModel

Purpose = Literal["telemarketing", "informational", "debt_collection"]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class Window(PolicyModel):
    """A local-time calling window [start, end)."""

    start: time
    end: time

    @model_validator(mode="after")
    def _ordered(self) -> Window:
        if self.end <= self.start:
            raise ValueError("end must be after start")
        return self


class Cap(PolicyModel):
    """At most `calls` attempts within `hours`."""

    calls: int = Field(ge=0, le=1000)
    hours: int = Field(ge=1, le=24 * 366)
    # Whether texts count as calls for this cap (Reg F: no; MA 940 CMR 7.04: yes).
    count_sms: bool = False
    # What the cap counts: a person and subject (telemarketing) or one debt (collection).
    per: Literal["person_subject", "debt", "person"] = "person_subject"


class StateRule(PolicyModel):
    """One state's rules for the purposes it lists."""

    purposes: frozenset[Purpose]
    window: Window | None = None
    days: dict[Weekday, Window | Literal["closed"]] = Field(default_factory=dict)
    no_holidays: bool = False
    cap: Cap | None = None
    ebr_purchase_days: int | None = Field(default=None, ge=0, le=3650)
    ebr_inquiry_days: int | None = Field(default=None, ge=0, le=3650)

    def window_for(self, weekday: Weekday) -> Window | Literal["closed"] | None:
        """The state's window on a weekday (None: only the federal window applies)."""
        return self.days.get(weekday, self.window)


class RegistryRules(PolicyModel):
    """How fresh the national registry must be."""

    national_max_age_days: int = Field(ge=1, le=31)


class EbrRules(PolicyModel):
    """Established business relationship windows."""

    purchase_days: int = Field(ge=0, le=548)
    inquiry_days: int = Field(ge=0, le=92)


class ConsentRules(PolicyModel):
    """Limits that apply without consent."""

    residential_prerecorded_limit: Cap


class RegF(PolicyModel):
    """Regulation F call-frequency presumptions."""

    max_attempts: int = Field(ge=0, le=7)
    window_days: int = Field(ge=7, le=31)
    after_conversation_days: int = Field(ge=7, le=31)


class ExtraHoliday(PolicyModel):
    """A proclaimed day off the `holidays` library cannot know."""

    date: date
    states: frozenset[str]
    name: str


class OutboundPolicy(PolicyModel):
    """policies/outbound.yaml."""

    tenant_overridable: ClassVar[bool] = True

    jurisdictions: frozenset[str]
    federal_window: Window
    federal_window_purposes: frozenset[Purpose]
    record_at_tolerance_seconds: int = Field(ge=0, le=3600)
    registry: RegistryRules
    ebr: EbrRules
    consent: ConsentRules
    reg_f: RegF
    campaign_caps: dict[str, Cap] = Field(default_factory=dict)
    extra_holidays: list[ExtraHoliday] = Field(default_factory=list)
    states: dict[str, StateRule]

    @model_validator(mode="after")
    def _federal_floor(self) -> OutboundPolicy:
        # A tenant may tighten the federal window, never widen it past 8 am - 9 pm.
        if self.federal_window.start < time(8) or self.federal_window.end > time(21):
            raise ValueError("federal_window cannot be wider than 08:00-21:00")
        if "telemarketing" not in self.federal_window_purposes:
            raise ValueError("federal_window_purposes must include telemarketing")
        for code in self.states:
            if len(code) != 2 or not code.isupper():
                raise ValueError(f"states.{code}: use the two-letter postal code")
        return self
