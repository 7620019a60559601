"""Database-view HIS adapter for hcmiddleware (entry point ``his-dbview``).

The HIS's views and stored procedures, with every SQL statement in the config file
(:class:`DbViewStatements`); see the project's docs/his.md.
"""

from __future__ import annotations

from hcm_his_dbview.adapter import NAME, DbViewHis, DbViewHisSettings, DbViewStatements

__all__ = ["NAME", "DbViewHis", "DbViewHisSettings", "DbViewStatements"]
