"""Composing parameterised SQL from the dataset declarations (identifiers only; values stay parameters)."""

from __future__ import annotations

from collections.abc import Iterable

from psycopg import sql


def identifiers(names: Iterable[str], alias: str | None = None) -> sql.Composable:
    """``"a", "b"`` or, with an alias, ``"t"."a", "t"."b"``."""
    if alias:
        return sql.SQL(", ").join(sql.SQL("{}.{}").format(sql.Identifier(alias), sql.Identifier(n)) for n in names)
    return sql.SQL(", ").join(map(sql.Identifier, names))
