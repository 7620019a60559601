"""The Alembic history builds exactly the tables the models describe, on both databases."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Engine

import hcmiddleware.audit.tables

# every module that declares tables: the comparison must not depend on test order
import hcmiddleware.cards.tables
import hcmiddleware.ehc.tables
import hcmiddleware.empi.schema
import hcmiddleware.face.store
import hcmiddleware.journal.tables
import hcmiddleware.printing.tables
import hcmiddleware.ward.tables  # noqa: F401
from hcmiddleware import storage
from hcmiddleware.storage import Base


def test_upgrade_creates_the_tables_and_is_idempotent(engine: Engine) -> None:
    assert storage.current_revision(engine) is None
    storage.upgrade(engine)
    assert storage.current_revision(engine) == storage.head_revision()
    storage.upgrade(engine)
    names = set(sa.inspect(engine).get_table_names())
    assert {
        "empi_data_keys",
        "empi_residents",
        "empi_identifiers",
        "empi_source_records",
        "empi_merge_events",
        "empi_review_queue",
        "face_templates",
        "ehc_used_codes",
        "ehc_revocation_lists",
        "ehc_revoked_cards",
        "ward_wristbands",
        "ward_executions",
        "ward_alarms",
        "ward_locations",
    } <= names


def test_migrations_match_the_models(engine: Engine) -> None:
    storage.upgrade(engine)
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(ctx, Base.metadata)
    assert diff == []


def test_downgrade_to_base_removes_the_tables(engine: Engine) -> None:
    storage.upgrade(engine)
    from alembic import command

    config = storage._alembic_config()
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "base")
    assert not {n for n in sa.inspect(engine).get_table_names() if n.startswith("empi_")}
