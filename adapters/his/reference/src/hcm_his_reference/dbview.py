"""The reference HIS's database face: install its schema (tables, views, procedures).

Many HIS are integrated through a database: the vendor grants read access to a few
views and execute rights on a few stored procedures. :func:`install` creates such a
HIS in one PostgreSQL schema, for the database-view adapter to be tested against;
its rules are the SQLite store's (see ``dbview.sql``).
"""

from __future__ import annotations

from importlib.resources import files
from typing import Any

__all__ = ["drop", "install", "schema_sql"]


def schema_sql() -> str:
    """The DDL of the reference HIS's database (tables, views, functions)."""
    return files("hcm_his_reference").joinpath("dbview.sql").read_text(encoding="utf-8")


def _ident(schema: str) -> str:
    if not schema.replace("_", "").isalnum() or not schema[:1].isalpha():
        raise ValueError(f"not a plain schema name: {schema!r}")
    return schema


def install(connection: Any, schema: str) -> None:
    """Create ``schema`` and the reference HIS inside it, on a DB-API connection."""
    name = _ident(schema)
    with connection.cursor() as cur:
        cur.execute(f"CREATE SCHEMA {name}")
        cur.execute(f"SET search_path TO {name}")
        cur.execute(schema_sql())
        cur.execute("SET search_path TO DEFAULT")
    connection.commit()


def drop(connection: Any, schema: str) -> None:
    """Drop ``schema`` and everything in it."""
    with connection.cursor() as cur:
        cur.execute(f"DROP SCHEMA IF EXISTS {_ident(schema)} CASCADE")
    connection.commit()
