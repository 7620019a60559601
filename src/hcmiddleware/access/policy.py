"""Roles, the operations each may perform and the categories of data each may see.

An *operation* is a service's method as a caller reaches it through a session:
``terminal.read``, ``residents.search``, ``journal.pay`` (:data:`OPERATIONS` lists every
one). A *category* is a kind of personal data (:class:`Category`). A role grants
operations (by name, ``service.*`` or ``*``) and categories; ``[access.roles.<role>]``
replaces a role's defaults (:data:`DEFAULT_ROLES`) as a whole. The fields of the answers
belong to categories too (:data:`DEFAULT_FIELDS`, :data:`DEFAULT_KINDS`;
``[access.fields.<model>]`` and ``[access.kinds.<model>]`` change them field by field).

This module imports nothing of the runtime: the configuration validates against it.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

__all__ = [
    "CARD_PART_CATEGORY",
    "CLINICAL",
    "DEFAULT_FIELDS",
    "DEFAULT_KINDS",
    "DEFAULT_ROLES",
    "MODELS",
    "OPERATIONS",
    "ROLES",
    "Category",
    "RoleGrant",
    "expand_operations",
]


class Category(enum.StrEnum):
    """A category of personal data a role may see."""

    IDENTITY = "identity"  #: name, sex, birth date, ID numbers, the card's issuer data, photo
    CONTACT = "contact"  #: phones, address, emergency contacts
    INSURANCE = "insurance"  #: insurance schemes and the card's expiry
    CLINICAL = "clinical"  #: clinical basics: blood group, conditions, warnings; orders, reports
    ALLERGIES = "allergies"
    IMMUNISATIONS = "immunisations"
    VISITS = "visits"  #: visit records (the card's DF03)
    MONEY = "money"  #: charges, bills, fees, deposits, payments, the journal
    FACE = "face"  #: enrolled face templates (enrol, 1:N search, remove)


#: the categories opened step by step (after identification at the terminal)
CLINICAL: frozenset[Category] = frozenset(
    {Category.CLINICAL, Category.ALLERGIES, Category.IMMUNISATIONS, Category.VISITS}
)

#: the card's parts (``docs/card.md`` "Parts") by the category that shows them
CARD_PART_CATEGORY: Mapping[str, Category] = {
    "issuer": Category.IDENTITY,
    "identity": Category.IDENTITY,
    "documents": Category.IDENTITY,
    "social": Category.IDENTITY,
    "photo": Category.IDENTITY,
    "insurance": Category.INSURANCE,
    "phones": Category.CONTACT,
    "contacts": Category.CONTACT,
    "basics": Category.CLINICAL,
    "allergies": Category.ALLERGIES,
    "immunisations": Category.IMMUNISATIONS,
    "visits": Category.VISITS,
}


def _ops(service: str, *methods: str) -> tuple[str, ...]:
    return tuple(f"{service}.{m}" for m in methods)


#: Every operation a session offers, in service order.
OPERATIONS: tuple[str, ...] = (
    *_ops("terminal", "read", "read_issuer", "write_visit"),
    *_ops(
        "residents", "get", "lookup", "search", "enrol", "enrol_from_card", "import_csv",
        "linkage", "merge", "unmerge", "history", "duplicates", "stats", "count", "train",
        "rewrap", "hospital_id", "link_hospital_id", "link_card",
    ),
    *_ops("faces", "verify_card", "verify", "enrol", "search", "remove"),
    *_ops(
        "his", "find", "register", "find_or_register", "resolve", "register_visit",
        "queue_position", "orders", "charges", "charges_paid", "reports", "admit",
        "record_deposit", "bill", "discharge", "order_executed", "provides", "check",
    ),
    *_ops(
        "cards", "check", "state", "entry", "sync", "apply", "status", "report_loss",
        "check_lists",
    ),
    *_ops(
        "ehc", "verify", "verify_image", "issue", "bind", "static_code", "dynamic_code",
        "sync_revocations", "apply_revocations", "check",
    ),
    *_ops(
        "ward", "bind", "rebind", "unbind", "release_stay", "binding", "band_of_card", "move",
        "label", "orders", "verify", "begin", "check", "execute", "abandon", "resend",
        "executions", "execution", "receive", "rejects", "alarms", "alarm", "acknowledge",
        "location", "summary",
    ),
    *_ops(
        "journal", "top_up", "pay", "refund", "settle", "cancel_settlement", "resolve",
        "recover", "get", "by_key", "entries", "history", "refundable",
    ),
    *_ops("audit", "record", "entries", "verify", "export", "checkpoint", "checkpoints", "head"),
    # no service of its own: reached through ``session.flows`` (bind_bank_card …)
    *_ops("bank", "bind", "unbind"),
)  # fmt: skip

#: The models whose fields a session cuts by category (``[access.fields.<model>]``), by
#: the name the configuration gives them.
MODELS: tuple[str, ...] = ("resident", "order", "report", "registration", "admission")

_C, _M = Category.CLINICAL, Category.MONEY

#: The fields of the answers a session cuts, by model: each field's category. A field not
#: named (IDs, states, kinds, times) is shown to every role that gets the answer at all.
#: ``[access.fields.<model>]`` changes the named fields and keeps the rest.
DEFAULT_FIELDS: Mapping[str, Mapping[str, Category]] = {
    "resident": {
        "name": Category.IDENTITY, "sex": Category.IDENTITY, "birth_date": Category.IDENTITY,
        "id_number": Category.IDENTITY, "unverified_id_number": Category.IDENTITY,
        "ethnicity": Category.IDENTITY, "region_code": Category.IDENTITY,
        "identifiers": Category.IDENTITY, "phone": Category.CONTACT,
        "address": Category.CONTACT,
    },
    "order": {
        "code": _C, "name": _C, "dose": _C, "concentration": _C, "route": _C, "frequency": _C,
        "ordered_by": _C,
    },
    "report": {"title": _C, "summary": _C, "results": _C, "signed_by": _C},
    "registration": {"fee": _M},
    "admission": {"deposit_balance": _M},
}  # fmt: skip

#: Kinds of order or report that are wholly of another category: a role that may not see
#: it gets the list without them (a skin test is an allergy test). ``[access.kinds.<model>]``.
DEFAULT_KINDS: Mapping[str, Mapping[str, Category]] = {
    "order": {"skin_test": Category.ALLERGIES},
    "report": {},
}

#: The roles (``Caller.role``).
ROLES: tuple[str, ...] = (
    "kiosk",
    "registration",
    "cashier",
    "doctor",
    "nurse",
    "pharmacist",
    "administrator",
    "auditor",
)


def expand_operations(patterns: Iterable[str]) -> frozenset[str]:
    """The operations ``patterns`` name (``terminal.read``, ``journal.*``, ``*``)."""
    return frozenset(op for op in OPERATIONS if any(fnmatchcase(op, p) for p in patterns))


@dataclass(frozen=True)
class RoleGrant:
    """What one role may do and see, once expanded from the configuration."""

    role: str
    operations: frozenset[str]
    categories: frozenset[Category]
    #: categories shown only for a resident identified at the caller's terminal
    step_by_step: frozenset[Category] = field(default_factory=frozenset)
    #: categories break glass may open for this role (empty: it may not break the glass)
    break_glass: frozenset[Category] = field(default_factory=frozenset)
    #: residents only after they were identified at the caller's terminal (a kiosk)
    own_only: bool = False
    #: may open its step-by-step categories of one resident not identified here by
    #: giving a reason (``session.open_with_reason``): the level below break glass
    by_reason: bool = False

    @property
    def grants_nothing(self) -> bool:
        """No operation at all: every call of this role is refused."""
        return not self.operations

    @property
    def grants_everything(self) -> bool:
        """Every operation and every category, without step-by-step opening."""
        return (
            self.operations == frozenset(OPERATIONS)
            and self.categories == frozenset(Category)
            and not self.step_by_step
            and not self.own_only
        )


_READ = ("terminal.read", "terminal.read_issuer")
_EHC_VERIFY = ("ehc.verify", "ehc.verify_image")
_LOOKUP = ("residents.get", "residents.lookup")

#: The roles' defaults: safe ones (each role what its desk needs, clinical data only
#: step by step). ``[access.roles.<role>]`` replaces a role's entry as a whole.
DEFAULT_ROLES: Mapping[str, Mapping[str, object]] = {
    "kiosk": {
        "operations": [
            *_READ, *_EHC_VERIFY, *_LOOKUP, "residents.enrol_from_card", "faces.verify_card",
            "his.find", "his.find_or_register", "his.resolve", "his.register_visit",
            "his.queue_position", "his.charges", "his.charges_paid", "his.reports",
            "cards.check", "cards.state", "cards.report_loss", "journal.top_up",
            "journal.pay", "journal.settle", "journal.get", "audit.record",
        ],
        "categories": ["identity", "insurance", "money", "clinical", "visits"],
        "step_by_step": ["clinical", "visits"],
        "own_only": True,
    },
    "registration": {
        "operations": [
            *_READ, *_EHC_VERIFY, *_LOOKUP, "residents.search", "residents.enrol",
            "residents.enrol_from_card", "residents.hospital_id", "residents.link_hospital_id",
            "residents.link_card", "faces.verify_card", "faces.verify", "faces.enrol",
            "his.find", "his.register", "his.find_or_register", "his.resolve",
            "his.register_visit", "his.queue_position", "his.admit", "cards.check",
            "cards.state", "cards.entry", "cards.status", "cards.report_loss", "ehc.issue",
            "ehc.bind", "ehc.static_code", "ehc.dynamic_code", "ward.bind", "ward.rebind",
            "ward.unbind", "ward.label", "ward.binding", "audit.record",
        ],
        "categories": ["identity", "contact", "insurance", "face"],
    },
    "cashier": {
        "operations": [
            *_READ, *_EHC_VERIFY, *_LOOKUP, "residents.search", "residents.enrol_from_card",
            "faces.verify_card", "his.find", "his.find_or_register", "his.resolve",
            "his.charges", "his.charges_paid", "his.record_deposit", "his.bill",
            "his.discharge", "cards.check", "cards.state", "journal.top_up", "journal.pay",
            "journal.refund", "journal.settle", "journal.cancel_settlement", "journal.get",
            "journal.by_key", "journal.history", "journal.refundable", "journal.resolve",
            "bank.bind", "bank.unbind", "ward.release_stay", "audit.record",
        ],
        "categories": ["identity", "insurance", "money"],
    },
    "doctor": {
        "operations": [
            *_READ, *_EHC_VERIFY, *_LOOKUP, "residents.search", "residents.enrol_from_card",
            "residents.history", "faces.verify_card", "faces.verify", "his.find",
            "his.find_or_register", "his.resolve", "his.register_visit", "his.queue_position",
            "his.orders", "his.reports", "cards.check", "cards.state", "ward.summary",
            "terminal.write_visit", "audit.record",
        ],
        "categories": [
            "identity", "contact", "insurance", "clinical", "allergies", "immunisations",
            "visits",
        ],
        "step_by_step": ["clinical", "allergies", "immunisations", "visits"],
        "break_glass": ["contact", "clinical", "allergies", "immunisations", "visits"],
        "by_reason": True,
    },
    "nurse": {
        "operations": [
            *_READ, *_EHC_VERIFY, *_LOOKUP, "faces.verify_card", "his.find", "his.resolve",
            "his.orders", "his.reports", "his.order_executed", "cards.check", "cards.state",
            "ward.binding", "ward.band_of_card", "ward.move", "ward.label", "ward.orders",
            "ward.verify", "ward.begin", "ward.check", "ward.execute", "ward.abandon",
            "ward.executions", "ward.execution", "ward.alarms", "ward.alarm",
            "ward.acknowledge", "ward.location", "ward.summary", "audit.record",
        ],
        "categories": ["identity", "contact", "clinical", "allergies", "immunisations", "visits"],
        "step_by_step": ["clinical", "allergies", "immunisations", "visits"],
        "break_glass": ["clinical", "allergies", "immunisations", "visits"],
        "by_reason": True,
    },
    "pharmacist": {
        "operations": [
            *_READ, *_EHC_VERIFY, *_LOOKUP, "his.find", "his.resolve", "his.orders",
            "cards.check", "cards.state", "audit.record",
        ],
        "categories": ["identity", "insurance", "clinical", "allergies"],
        "step_by_step": ["clinical", "allergies"],
    },
    "administrator": {
        "operations": [
            "residents.*", "faces.remove", "his.provides", "his.check", "cards.*",
            "ehc.sync_revocations", "ehc.apply_revocations", "ehc.check", "ward.resend",
            "ward.rejects", "ward.receive", "journal.recover", "journal.resolve",
            "journal.entries", "journal.get", "journal.history", "audit.record",
            "audit.checkpoint", "audit.head",
        ],
        "categories": ["identity"],
    },
    "auditor": {
        "operations": [
            "audit.entries", "audit.verify", "audit.export", "audit.checkpoints",
            "audit.head", "audit.record", "journal.entries", "journal.get",
            "journal.history", "residents.history", "residents.stats",
        ],
        "categories": [],
    },
}  # fmt: skip
