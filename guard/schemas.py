"""Shared pydantic bases for request and response bodies."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict


class Request(BaseModel):
    """A request body or query: unknown fields are refused, strings are stripped."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=True)


class Response(BaseModel):
    """A response body."""

    model_config = ConfigDict(frozen=True)


def _aware(v: datetime) -> datetime:
    if v.tzinfo is None:
        raise ValueError("must include a time zone offset (e.g. Z)")
    return v.astimezone(UTC)


AwareDatetime = Annotated[datetime, AfterValidator(_aware)]
