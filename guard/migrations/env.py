"""Alembic environment: runs Guard's migrations against the configured URL."""

from __future__ import annotations

from alembic import context

import guard.all_models  # noqa: F401 - registers every table on Base.metadata
from guard.db import Base, make_engine

config = context.config
target_metadata = Base.metadata


def run() -> None:
    """Run migrations online (Guard never generates offline SQL)."""
    url = config.get_main_option("sqlalchemy.url")
    assert url
    engine = make_engine(url, pool=False)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata,
                          render_as_batch=connection.dialect.name == "sqlite",
                          compare_type=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run()
