"""What the isolation test looks for: another tenant's content in anything a call returns or a page shows."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import DeclarativeBase


def flatten(value: Any, *, depth: int = 0) -> Iterable[str]:
    """Every string and id inside a result: ORM rows by their columns, dataclasses by their fields."""
    if depth > 8 or value is None:
        return
    if isinstance(value, str):
        yield value
    elif isinstance(value, bytes | bool | int | float):
        yield str(value)
    elif isinstance(value, DeclarativeBase):
        for column in sa_inspect(type(value)).columns:
            yield f"{column.key}={getattr(value, column.key)}"
            yield from flatten(getattr(value, column.key), depth=depth + 1)
    elif isinstance(value, BaseModel):
        yield from flatten(value.model_dump(), depth=depth + 1)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            yield f"{f.name}={getattr(value, f.name)!s:.200}"
            yield from flatten(getattr(value, f.name), depth=depth + 1)
    elif isinstance(value, dict):
        for k, v in value.items():
            yield str(k)
            yield from flatten(v, depth=depth + 1)
    elif hasattr(value, "to_csv"):
        yield value.to_csv()
    elif isinstance(value, Iterable):
        for item in value:
            yield from flatten(item, depth=depth + 1)
    else:
        yield str(value)


def leaks(value: Any, markers: Iterable[str], *, tenant_id: int) -> list[str]:
    """The markers of another tenant found in ``value``, and any row that carries that tenant's id."""
    text = "\n".join(flatten(value))
    found = [m for m in markers if m and m in text]
    if f"tenant_id={tenant_id}\n" in text + "\n":
        found.append(f"a row of tenant {tenant_id}")
    return found
