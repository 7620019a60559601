"""Alembic environment: runs on the connection :func:`hcmiddleware.storage.upgrade` hands in."""

from __future__ import annotations

from alembic import context

import hcmiddleware.access.tables as _access_tables  # noqa: F401  (grants, identifications)
import hcmiddleware.audit.tables as _audit_tables  # noqa: F401  (the audit log)
import hcmiddleware.cards.tables as _card_tables  # noqa: F401  (lists of refused cards)
import hcmiddleware.ehc.tables  # the e-card's replay store and revocations
import hcmiddleware.empi.schema  # noqa: F401  (registers the tables on Base.metadata)
import hcmiddleware.journal.tables as _journal_tables  # noqa: F401  (the money journal)
import hcmiddleware.printing.tables as _print_tables  # noqa: F401  (the print log)
import hcmiddleware.ward.tables as _ward_tables  # noqa: F401  (the ward)
from hcmiddleware.storage import Base

config = context.config
connection = config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through hcmiddleware.storage.upgrade(engine)")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    # SQLite cannot ALTER most things in place; batch mode rebuilds the table instead.
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
