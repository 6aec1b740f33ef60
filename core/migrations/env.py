from __future__ import annotations

from alembic import context

from core.models import Base

config = context.config
engine = config.attributes.get("engine")
if engine is None:  # `alembic` run from the command line: use the configured database
    from core.db import get_engine

    engine = get_engine()

with engine.begin() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
