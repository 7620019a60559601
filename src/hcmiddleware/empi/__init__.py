"""The resident master index (EMPI): identity rules, encrypted storage, matching, merges.

Start with :class:`~hcmiddleware.empi.index.ResidentIndex` and a
:class:`~hcmiddleware.empi.protection.Protector` holding the keys::

    from hcmiddleware import storage
    from hcmiddleware.empi import ResidentIndex, Protector

    engine = storage.create_engine("sqlite:///empi.db")
    index = ResidentIndex(engine, Protector({"2026a": master_key}, "2026a", index_key))
    found = index.enrol(name="张秀英", sex=2, id_number="11010519491231002X")

See ``docs/empi.md`` for the design (keys, blocking, the model, merges).
"""

from __future__ import annotations

from hcmiddleware.empi.identity import ChildNumber, IdNumber, Sex, parse_identity
from hcmiddleware.empi.index import PreparedRecord, ResidentIndex
from hcmiddleware.empi.matching import Thresholds
from hcmiddleware.empi.protection import ProtectionSettings, Protector
from hcmiddleware.empi.records import Candidate, Enrolment, MergeEvent, ReviewItem
from hcmiddleware.empi.schema import IdentifierKind
from hcmiddleware.models import Identifier, Resident, ResidentStatus

__all__ = [
    "Candidate",
    "ChildNumber",
    "Enrolment",
    "IdNumber",
    "Identifier",
    "IdentifierKind",
    "MergeEvent",
    "PreparedRecord",
    "ProtectionSettings",
    "Protector",
    "Resident",
    "ResidentIndex",
    "ResidentStatus",
    "ReviewItem",
    "Sex",
    "Thresholds",
    "parse_identity",
]
