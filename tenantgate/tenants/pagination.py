"""Keyset pagination over time-ordered ids, newest first (ids embed their creation time, see ``ids``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import Select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    has_more: bool


async def newest_first(
    session: AsyncSession,
    statement: Select[T],
    id_column: InstrumentedAttribute[Any],
    *,
    limit: int,
    after: str | None,
) -> Page[T]:
    """One page of ``statement``; ``after`` is the last id of the previous page."""
    if after:
        statement = statement.where(id_column < after)
    rows = list((await session.scalars(statement.order_by(id_column.desc()).limit(limit + 1))).all())
    return Page(rows[:limit], len(rows) > limit)
