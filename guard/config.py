"""Settings: one pydantic-settings class read from GUARD_* environment variables."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from guard.errors import ConfigError

DEFAULT_POLICIES_DIR = Path(__file__).resolve().parent.parent / "policies"


class Settings(BaseSettings):
    """Everything Guard reads from its environment, validated once at start-up."""

    model_config = SettingsConfigDict(env_prefix="GUARD_", extra="forbid", frozen=True)

    instance_dir: Path = Path("instance")
    database_url: str = ""
    keyring_path: Path | None = None
    policies_dir: Path = DEFAULT_POLICIES_DIR
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_json: bool = True
    processor: Literal["sandbox", "stripe"] = "sandbox"
    redis_url: str | None = None
    redis_prefix: str = "guard:"
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    max_batch_body_bytes: int = Field(default=64 * 1024 * 1024, ge=1024, le=1024 * 1024 * 1024)
    key_environment: Literal["live", "test"] = "live"
    # How long a validated API key is trusted without re-reading the database; revocation
    # must reach every worker within one second, so this is bounded to 1 s.
    key_cache_seconds: float = Field(default=1.0, ge=0.0, le=1.0)
    audit_verify_budget_seconds: float = Field(default=2.0, gt=0, le=60)
    trust_forwarded_for: bool = False
    port: int = Field(default=8080, ge=0, le=65535)
    # /metrics without an API key: only where the network already restricts who can reach it
    # (a scraper inside the cluster); otherwise a key holding `metrics.read` is required.
    metrics_public: bool = False
    # SIEM forwarding (PCI DSS 10.3.3): comma-separated syslog://, syslog+udp://, syslog+tls://
    # or https:// destinations the `siem.forward` job sends every audit event to.
    siem_url: str = ""
    # Sent as the Authorization header to https:// SIEM destinations (e.g. "Splunk <token>").
    siem_authorization: SecretStr | None = None
    # A CA bundle for SIEM endpoints signed by a private CA (TLS is always verified).
    siem_ca_file: Path | None = None

    @field_validator("database_url")
    @classmethod
    def _known_driver(cls, v: str) -> str:
        if v and not v.startswith(("sqlite", "postgresql")):
            raise ValueError("must be a sqlite:// or postgresql+psycopg:// URL")
        return v

    @model_validator(mode="after")
    def _fill_paths(self) -> Settings:
        # Defaults derived from instance_dir; frozen model, so set through __dict__.
        if not self.database_url:
            self.__dict__["database_url"] = f"sqlite:///{(self.instance_dir / 'guard.db').resolve()}"
        if self.database_url.startswith("postgresql://"):
            self.__dict__["database_url"] = "postgresql+psycopg://" + self.database_url[13:]
        if self.keyring_path is None:
            self.__dict__["keyring_path"] = self.instance_dir / "guard.keyring"
        return self

    @property
    def keyring_file(self) -> Path:
        """The keyring path (always set after validation)."""
        assert self.keyring_path is not None
        return self.keyring_path


def load_settings(**overrides: object) -> Settings:
    """Build Settings from the environment, turning validation errors into a named ConfigError."""
    known = {f"GUARD_{name.upper()}" for name in Settings.model_fields}
    # A misspelt variable would otherwise be ignored and its default silently used.
    # GUARD_TEST_* belong to the test suite, not to the service.
    unknown = sorted(k for k in os.environ
                     if k.startswith("GUARD_") and k not in known and not k.startswith("GUARD_TEST_"))
    if unknown:
        raise ConfigError(f"unknown setting(s): {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"]) or "?"
            problems.append(f"GUARD_{field.upper()}: {err['msg']}")
        raise ConfigError("invalid setting: " + "; ".join(problems)) from None
