"""Alembic, driven from code: the schema exists only through these migrations."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config(database_url: str) -> Config:
    """An Alembic config pointing at the packaged migrations and the given database."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return cfg


def upgrade(database_url: str, revision: str = "heads") -> None:
    """Bring the database to the newest schema."""
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str) -> None:
    """Step the schema back (development only)."""
    command.downgrade(alembic_config(database_url), revision)


def head_revisions() -> set[str]:
    """The newest revision(s) the code knows."""
    return set(ScriptDirectory(str(MIGRATIONS)).get_heads())


def current_revisions(conn: Connection) -> set[str]:
    """The revision(s) the database is at."""
    return set(MigrationContext.configure(conn).get_current_heads())
