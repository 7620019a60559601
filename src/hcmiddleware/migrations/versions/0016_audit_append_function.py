"""Audit log, PostgreSQL: the chain's step as a function of the database's own.

``hcm_audit_append(at, action, actor, subject, outcome, user, role, terminal, details)``
appends one entry after the chain's head: it locks the head row, builds the entry's
canonical text exactly as :func:`hcmiddleware.audit.chain.canonical` does (and as the
verifier's query does, :func:`~hcmiddleware.audit.chain.canonical_sql`), hashes it after
the head's hash with the database's ``sha256()``, inserts the entry, moves the head, and
returns the entry's number, previous hash and hash with the head's last checkpoint.

The process sends it together with the transaction's ``COMMIT``, in the same message, so
an entry in a caller's transaction costs no round trip of its own. A chain hashed with
SM3 (which PostgreSQL lacks) is still appended to by Python, and so is a chain on SQLite:
nothing is made there.

An entry the function cannot append raises an error, which aborts the transaction and so
the ``COMMIT`` sent after it: the head row missing (``HC001``), a chain hashed with
another function (``HC002``). Locking the head with ``FOR UPDATE`` reads its newest
version once the lock is granted, so concurrent appenders from any process queue on the
row and the numbers have no gaps.

Revision ID: 0016_audit_append_function
Revises: 0015_card_list_entry_versions
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

revision = "0016_audit_append_function"
down_revision = "0015_card_list_entry_versions"
branch_labels = None
depends_on = None

#: U+001F between fields, U+001E for an absent one: chain.SEP and chain.ABSENT
_FUNCTION = r"""
CREATE OR REPLACE FUNCTION hcm_audit_append(
    p_at timestamp without time zone,
    p_action text,
    p_actor text,
    p_subject text,
    p_outcome text,
    p_user text,
    p_role text,
    p_terminal text,
    p_details text,
    OUT entry_seq bigint,
    OUT entry_prev bytea,
    OUT entry_hash bytea,
    OUT mark_seq bigint,
    OUT mark_at timestamp without time zone
) LANGUAGE plpgsql VOLATILE AS $hcm$
DECLARE
    chain_algorithm text;
BEGIN
    SELECT h.seq + 1, coalesce(h.hash, decode(repeat('00', 32), 'hex')), h.algorithm,
           h.checkpoint_seq, h.checkpoint_at
      INTO entry_seq, entry_prev, chain_algorithm, mark_seq, mark_at
      FROM audit_head AS h WHERE h.id = 1 FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'the audit log''s head row is missing' USING ERRCODE = 'HC001';
    END IF;
    IF chain_algorithm IS NOT NULL AND chain_algorithm <> 'sha256' THEN
        RAISE EXCEPTION 'the audit chain is not hashed with sha256'
            USING ERRCODE = 'HC002', DETAIL = chain_algorithm;
    END IF;
    entry_hash := sha256(entry_prev || convert_to(
        entry_seq::text
        || chr(31) || to_char(p_at, 'YYYY-MM-DD HH24:MI:SS.US')
        || chr(31) || p_action
        || chr(31) || p_actor
        || chr(31) || coalesce(p_subject, chr(30))
        || chr(31) || p_outcome
        || chr(31) || coalesce(p_user, chr(30))
        || chr(31) || coalesce(p_role, chr(30))
        || chr(31) || coalesce(p_terminal, chr(30))
        || chr(31) || p_details,
        'UTF8'));
    INSERT INTO audit_log (seq, at, action, actor, subject, outcome, user_id, role,
                           terminal, details, prev_hash, hash)
    VALUES (entry_seq, p_at, p_action, p_actor, p_subject, p_outcome, p_user, p_role,
            p_terminal, p_details, entry_prev, entry_hash);
    UPDATE audit_head SET seq = entry_seq, hash = entry_hash, algorithm = 'sha256'
     WHERE id = 1;
END
$hcm$
"""


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        bind.exec_driver_sql(_FUNCTION)  # as written: no parameters (and no '%' in it)


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        bind.exec_driver_sql(
            "DROP FUNCTION IF EXISTS hcm_audit_append(timestamp without time zone, text, "
            "text, text, text, text, text, text, text)"
        )
