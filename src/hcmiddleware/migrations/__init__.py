"""Alembic migrations of every table of the product: one linear history.

Run them with :func:`hcmiddleware.storage.upgrade`; no ``alembic.ini`` is needed. A
part that adds tables adds a revision whose ``down_revision`` is the current head.
"""
