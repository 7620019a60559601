"""Endpoints named after the vendors' reader-DLL functions, for HIS code written against them.

``POST /dll/iR_DDF1EF06Info`` answers what ``iR_DDF1EF06Info`` fills in — name, sex,
ethnicity, birth date, ID number — as ``{"code": 0, "items": {"11": …, "12": …}}``, the
items keyed by their number (docs/card-spec.md) and given as the DLL gives them: text,
``YYYYMMDD`` dates, codes as digits, binary items as upper-case hex. ``wsc_GetCardInfo``
takes the item numbers. A card, SAM or parameter failure is an answer too, with the
DLL's code (101–113, :data:`CODES`) and the typed error's name, message and hint; the
agent's own refusals (token, origin, rate, role) stay HTTP problems.
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from pydantic import BaseModel, Field

from hcmiddleware.agent.callers import Caller, Session
from hcmiddleware.agent.deps import As, Who
from hcmiddleware.card.filemap import ITEMS, PART_ITEMS, CardPart
from hcmiddleware.errors import AgentError, CardPartError, HcmError

if TYPE_CHECKING:
    from hcmiddleware.agent.app import AgentState
    from hcmiddleware.card.data import CardRead

__all__ = ["CODES", "FUNCTIONS", "DllAnswer", "add_dll", "code_of"]

#: The DLL's return codes (our numbering of the vendors' 101–113 kinds), by error class
#: name; the nearest class up the tree wins, anything else is 113.
CODES: dict[str, int] = {
    "AgentRequestError": 101,  # parameter
    "CardPartError": 101,
    "SamInputError": 101,
    "ReaderError": 102,  # no reader, no PC/SC service
    "CardAbsentError": 103,  # no card / card pulled
    "ForeignCardError": 104,  # not a resident health card
    "CardFileNotFoundError": 105,  # no such file or record
    "CardProtocolError": 106,  # read failure
    "CardDataError": 106,
    "CardLengthError": 106,
    "CardParameterError": 106,
    "CardStatusError": 106,
    "SamError": 108,  # PSAM error
    "CardAuthError": 109,  # authentication failure
    "CardAuthenticityError": 109,
    "CardSecurityError": 109,
    "CardMacError": 109,
    "SecureMessagingError": 109,
    "CardKeyBlockedError": 110,  # key blocked, or held back at 2 tries left
    "CardKeyAtRiskError": 110,
    "SamBlockedError": 110,
    "SamPinError": 110,
    "CardCityError": 111,  # card of another city
    "CardRefusedError": 112,  # lost, cancelled, replaced, frozen
    "AgentBusyError": 107,  # reader busy with another read
    "CardError": 106,
}
#: What each code means (the table in docs/agent.md).
MEANINGS: dict[int, str] = {
    0: "ok",
    101: "parameter error",
    102: "reader not found or PC/SC unavailable",
    103: "no card in the reader, or the card was pulled",
    104: "not a resident health card",
    105: "file or record not on the card",
    106: "read failure (the card answered wrongly)",
    107: "reader busy with another read",
    108: "PSAM error",
    109: "authentication failure",
    110: "key or PIN blocked",
    111: "card of another city than the PSAM",
    112: "card refused: lost, cancelled, replaced or frozen",
    113: "other error",
}


def code_of(exc: HcmError) -> int:
    """The DLL return code for ``exc``."""
    for cls in type(exc).__mro__:
        code = CODES.get(cls.__name__)
        if code is not None:
            return code
    return 113


class DllAnswer(BaseModel):
    """A DLL function's answer: ``code`` 0 with the items, or an error code and why."""

    code: int = Field(description="0 ok; 101-113 as the vendors' DLLs (docs/agent.md)")
    items: dict[str, str] = Field(default_factory=dict, description="item number -> value")
    records: list[dict[str, str]] = Field(default_factory=list, description="cyclic records")
    error: str | None = Field(None, description="the typed error's class")
    message: str | None = None
    hint: str | None = None


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, dt.datetime):
        return value.strftime("%Y%m%d%H%M%S")
    if isinstance(value, dt.date):
        return value.strftime("%Y%m%d")
    if isinstance(value, bytes):
        return value.hex().upper()
    return str(value)


def _flat(card: CardRead) -> dict[str, Any]:
    """Every item the read holds, by item name."""
    data = card.model_dump()
    out: dict[str, Any] = dict(data["issuer"])
    out.pop("parts", None)
    if data["cardholder"]:
        out.update(data["cardholder"])
    validity = data["validity"]
    if validity:
        out.update({k: validity[k] for k in ("expiry_date", "phone1", "phone2")})
        for i, method in enumerate((validity["payment_methods"] or [])[:3], start=1):
            out[f"payment_method{i}"] = method
    personal = data["personal"]
    if personal:
        for i, address in enumerate((personal["addresses"] or [])[:2], start=1):
            out[f"address{i}_type"], out[f"address{i}"] = address["type"], address["address"]
        for i, contact in enumerate((personal["contacts"] or [])[:3], start=1):
            for field in ("name", "relationship", "phone"):
                out[f"contact{i}_{field}"] = contact[field]
        for key in (
            "education",
            "marital_status",
            "occupation",
            "id_document_type",
            "id_document_number",
            "health_record_number",
            "rural_insurance_number",
        ):
            out[key] = personal[key]  # fmt: skip
    clinical = data["clinical"]
    if clinical:
        for key in ("abo", "rh", "other_warning", "psychiatric"):
            out[key] = clinical[key]
        out.update(clinical["conditions"] or {})
    return out


#: Each function: (the parts it reads, the item numbers it answers).
FUNCTIONS: dict[str, tuple[tuple[CardPart, ...], tuple[int, ...]]] = {
    "iR_DDF1EF05Info": ((CardPart.ISSUER,), (1, 2, 3, 4, 5, 6, 8, 9, 10, 57)),
    "iR_DDF1EF06Info": ((CardPart.IDENTITY,), (11, 12, 13, 14, 15)),
    "iR_DDF1EF08Info": ((CardPart.INSURANCE, CardPart.PHONES), (7, 16, 17, 18, 19, 20)),
    "iR_DF01EF05Info": ((CardPart.CONTACTS,), (21, 22, 23, 24)),
    "iR_DF01EF06Info": ((CardPart.CONTACTS,), tuple(range(25, 34))),
    "iR_DF01EF07Info": ((CardPart.SOCIAL,), (34, 35, 36)),
    "iR_DF01EF08Info": ((CardPart.DOCUMENTS,), (37, 38, 39, 40)),
    "iR_DF02EF05Info": ((CardPart.BASICS,), tuple(range(41, 56))),
    "iR_DF02EF06Info": ((CardPart.BASICS,), (56,)),
}

#: The part that holds each item (for wsc_GetCardInfo).
_ITEM_PART: dict[int, CardPart] = {
    item.number: part for part, items in PART_ITEMS.items() for item in items
}


class ItemsRequest(BaseModel):
    """``wsc_GetCardInfo``: the item numbers wanted (1-57)."""

    items: list[int] = Field(min_length=1, max_length=57)


class RecordRequest(BaseModel):
    """``iR_DF03EEInfo`` / ``iR_DF03EDInfo``: which visit record (1-based)."""

    rec: int = Field(ge=1, le=5)


def add_dll(app: FastAPI, state: AgentState) -> None:
    """Add the ``/dll/…`` endpoints to ``app``."""

    def read(s: Session, who: Caller, parts: tuple[CardPart, ...]) -> CardRead:
        with state.card():
            card: CardRead = s.terminal.read(actor=who.user, parts=",".join(parts))
        return card

    def items_of(card: CardRead, numbers: Sequence[int]) -> dict[str, str]:
        flat = _flat(card)
        return {str(n): _text(flat.get(ITEMS[n].name)) for n in numbers}

    def items_function(name: str, parts: tuple[CardPart, ...], numbers: tuple[int, ...]) -> None:
        def endpoint(s: As, who: Who) -> DllAnswer:
            return _answer(lambda: DllAnswer(code=0, items=items_of(read(s, who, parts), numbers)))

        endpoint.__doc__ = f"Items {', '.join(map(str, numbers))}, as the DLL's {name}."
        app.post(f"/dll/{name}", tags=["dll"], name=name, operation_id=name)(endpoint)

    for name, (parts, numbers) in FUNCTIONS.items():
        items_function(name, parts, numbers)

    @app.post("/dll/iR_DDF1EF07Info", tags=["dll"], operation_id="iR_DDF1EF07Info")
    def photo(s: As, who: Who) -> DllAnswer:
        """The photo (DDF1/EF07) as base64 JPEG in item ``photo``; empty when none."""

        def work() -> DllAnswer:
            card = read(s, who, (CardPart.PHOTO,))
            return DllAnswer(code=0, items={"photo": base64.b64encode(card.photo).decode()})

        return _answer(work)

    def visit_function(name: str, kind: str, limit: int) -> None:
        def endpoint(s: As, who: Who, body: RecordRequest) -> DllAnswer:
            def work() -> DllAnswer:
                if body.rec > limit:
                    raise CardPartError(
                        f"there are {limit} {kind} records; rec {body.rec} is none of them",
                        part="visits",
                    )
                card = read(s, who, (CardPart.VISITS,))
                for record in card.visits:
                    if record.kind == kind and record.slot == body.rec:
                        fields = record.model_dump(exclude={"kind", "slot"})
                        return DllAnswer(code=0, items={k: _text(v) for k, v in fields.items()})
                return DllAnswer(
                    code=105,
                    error="CardFileNotFoundError",
                    message=f"{kind} record {body.rec} is not valid on this card",
                    hint="the card holds no visit in that record",
                )

            return _answer(work)

        endpoint.__doc__ = f"The {kind} visit record ``rec`` (DF03), as the DLL's {name}."
        app.post(f"/dll/{name}", tags=["dll"], name=name, operation_id=name)(endpoint)

    visit_function("iR_DF03EEInfo", "inpatient", 3)
    visit_function("iR_DF03EDInfo", "outpatient", 5)

    @app.post("/dll/wsc_GetCardInfo", tags=["dll"], operation_id="wsc_GetCardInfo")
    def get_card_info(s: As, who: Who, body: ItemsRequest) -> DllAnswer:
        """Items by number (1-57), read in as few parts as they need."""

        def work() -> DllAnswer:
            unknown = [n for n in body.items if n not in ITEMS]
            if unknown:
                raise CardPartError(
                    f"there is no data element {unknown[0]} on the health card", part="items"
                )
            wanted = {_ITEM_PART.get(n, CardPart.ISSUER) for n in body.items}
            parts = tuple(p for p in CardPart if p in wanted)
            return DllAnswer(code=0, items=items_of(read(s, who, parts), body.items))

        return _answer(work)

    @app.get("/dll/codes", tags=["dll"], operation_id="dll_codes")
    async def codes() -> dict[str, str]:
        """What each return code means."""
        return {str(k): v for k, v in MEANINGS.items()}


def _answer(work: Callable[[], DllAnswer]) -> DllAnswer:
    """``work()``'s answer; a card, SAM or parameter error as its DLL code. The agent's
    and the roles' refusals stay HTTP problems."""
    try:
        return work()
    except HcmError as exc:
        names = {c.__name__ for c in type(exc).__mro__}
        if "AccessDeniedError" in names or (
            isinstance(exc, AgentError) and exc.status in (401, 403, 429)
        ):
            raise
        return _failed(exc)


def _failed(exc: HcmError) -> DllAnswer:
    return DllAnswer(code=code_of(exc), error=type(exc).__name__, message=exc.message,
                     hint=exc.hint)  # fmt: skip
