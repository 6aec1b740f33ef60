"""The API's engine: the configured database, migrated once per process (as the app's factory does)."""

from __future__ import annotations

from functools import lru_cache

from sqlalchemy import Engine

from core.db import get_engine, migrate
from core.settings import get_settings


@lru_cache(maxsize=4)
def _migrated(url: str) -> Engine:
    engine = get_engine(url)
    migrate(engine)
    return engine


def engine() -> Engine:
    return _migrated(get_settings().resolved_database_url)


def reset() -> None:
    """Forget the engine (tests change DATABASE_URL between cases)."""
    _migrated.cache_clear()
