"""The agent's HTTP application: the typed services of one Middleware, over HTTP.

:func:`create_app` builds a FastAPI application on a started
:class:`~hcmiddleware.runtime.Middleware`. Each route is a thin call of one service
method through the caller's session (:func:`~hcmiddleware.agent.callers.session_for`);
what it answers is the service's own model, and what it raises is the service's own
typed error as problem+json (:mod:`hcmiddleware.agent.problems`). The OpenAPI document
(``/openapi.json``) is generated from those pydantic models.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import inspect
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from hcmiddleware import __version__
from hcmiddleware.agent.auditing import CallLog
from hcmiddleware.agent.callers import (
    AGENT_OPERATIONS,
    Caller,
    Session,
    TokenBook,
    need,
    provided,
    session_for,
)
from hcmiddleware.agent.deps import As, Who
from hcmiddleware.agent.events import EventBridge
from hcmiddleware.agent.guard import Guard
from hcmiddleware.agent.problems import MEDIA_TYPE, Problem, problem_of, status_of
from hcmiddleware.agent.workers import Committer, Workers, on_loop, route_for
from hcmiddleware.card.data import CardRead, Issuer
from hcmiddleware.card.filemap import CardPart
from hcmiddleware.card.monitor import CardEvents
from hcmiddleware.config import AgentSection
from hcmiddleware.empi.records import Candidate
from hcmiddleware.errors import AgentBusyError, AgentRequestError, HcmError
from hcmiddleware.face.verify import FaceVerification
from hcmiddleware.models import (
    Alarm,
    BedsideExecution,
    BedsideScan,
    Charge,
    EhcVerification,
    HospitalPatient,
    IdentifierKind,
    Order,
    PaymentStatus,
    Registration,
    RegistrationRequest,
    Resident,
    Sex,
    Verdict,
)
from hcmiddleware.runtime import Middleware

__all__ = ["AgentState", "MoneyRequest", "MovementOut", "create_app", "movement_out"]

log = logging.getLogger("hcmiddleware.agent")

#: Problem answers every route may give, for the OpenAPI document.
_PROBLEMS: dict[int | str, dict[str, Any]] = {
    status: {"model": Problem, "content": {MEDIA_TYPE: {}}, "description": text}
    for status, text in {
        400: "malformed request",
        401: "no token, or a wrong one",
        403: "the role may not do this, or the origin is not allowed",
        404: "not found",
        409: "conflict: no card, reader busy, already done",
        413: "body too large",
        422: "the request or the data is refused",
        429: "too many requests",
        501: "no enabled adapter provides the capability",
        502: "an adapter or remote system failed",
        503: "a device or remote system is unavailable",
        504: "a remote system did not answer in time",
    }.items()
}


class AgentState:
    """What the routes share: the Middleware, the settings, the card lock, the events."""

    def __init__(self, mw: Middleware, settings: AgentSection) -> None:
        self.mw = mw
        self.settings = settings
        self.tokens = TokenBook(settings.tokens)
        self.events = EventBridge()
        #: the agent's own ``agent.call`` entries, written in batches
        self.calls = CallLog(mw)
        #: the threads the routes' service calls run in (one hand-over per request)
        self.workers = Workers()
        #: commits the audit entries of the routes that run on the loop (``on_loop``)
        self.committer = Committer(mw._raw("audit"))
        self.card_lock = threading.Lock()
        self.started = dt.datetime.now(dt.UTC)
        self._active = 0
        self._idle = threading.Condition()
        #: callers whose session was made once: their role and terminal are configured
        self._admitted: set[Caller] = set()
        #: the card events ``hcm agent serve`` started (the console shows their state)
        self.card_events: CardEvents | None = None

    async def session(self, who: Caller) -> Session:
        """A new session for ``who`` (a session per request: it holds what the request
        identified, nothing longer).

        Making one does no I/O once the caller's role and terminal were found configured;
        the first time (or when they are not, which writes the refusal to the audit log)
        it runs in a worker thread, off the event loop.
        """
        if who in self._admitted:
            return session_for(self.mw, who)
        made = await self.workers.run(session_for, self.mw, who)
        self._admitted.add(who)
        return made

    def close(self) -> None:
        """Stop the worker threads (the calls queued run first) and write the queued
        ``agent.call`` entries; the Middleware stays open (it is the caller's)."""
        self.workers.close()
        self.committer.close()
        self.calls.close()

    @contextmanager
    def moving_money(self) -> Iterator[None]:
        """Around a money movement: shutdown waits for it (:meth:`wait_idle`)."""
        with self._idle:
            self._active += 1
        try:
            yield
        finally:
            with self._idle:
                self._active -= 1
                self._idle.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no money movement is under way; False if one still is."""
        with self._idle:
            return self._idle.wait_for(lambda: self._active == 0, timeout)

    @contextmanager
    def card(self) -> Iterator[None]:
        """One card read at a time (two tabs reading at once take turns)."""
        if not self.card_lock.acquire(timeout=self.settings.card_wait):
            raise AgentBusyError(
                f"the card reader is busy with another read for over {self.settings.card_wait:g} s"
            )
        try:
            yield
        finally:
            self.card_lock.release()


# --- request and answer models ------------------------------------------------------------


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EnrolRequest(_Body):
    """A resident to enrol by hand (no card)."""

    name: str = Field(min_length=1, max_length=50)
    sex: Sex
    birth_date: dt.date | None = None
    id_number: str | None = Field(None, max_length=18)
    phone: str | None = Field(None, max_length=20)
    address: str | None = Field(None, max_length=100)
    card_number: str | None = Field(None, max_length=18)


class SearchRequest(_Body):
    """Demographics to search the index with; at least a name."""

    name: str = Field(min_length=1, max_length=50)
    sex: Sex | None = None
    birth_date: dt.date | None = None
    phone: str | None = Field(None, max_length=20)
    address: str | None = Field(None, max_length=100)
    id_number: str | None = Field(None, max_length=18)
    limit: int = Field(10, ge=1, le=100)


class PatientRequest(_Body):
    """Find the resident's patient in the HIS, or register one."""

    resident_id: str = Field(min_length=1, max_length=64)


class VisitRequest(_Body):
    """Register a visit for a patient."""

    patient: HospitalPatient
    request: RegistrationRequest


class MoneyRequest(_Body):
    """A top-up or payment from the card's account; ``key`` makes a retry safe."""

    key: str = Field(min_length=1, max_length=64, description="idempotency key")
    card_number: str = Field(min_length=1, max_length=32)
    amount: Decimal = Field(gt=0, max_digits=12, decimal_places=2, description="yuan")


class MovementOut(BaseModel):
    """A journal entry: a money movement and the state it is in."""

    transaction_id: str
    idempotency_key: str
    channel: str
    kind: str
    state: PaymentStatus
    amount: Decimal
    currency: str
    created_at: dt.datetime
    updated_at: dt.datetime
    original_transaction_id: str | None = None
    remote_reference: str | None = None
    settlement_id: str | None = None
    fund_paid: Decimal | None = None
    patient_paid: Decimal | None = None
    reason: str | None = None
    attempts: int = 0
    terminal_id: str | None = None
    card_masked: str | None = None


class EhcVerifyRequest(_Body):
    """An e-card code as scanned."""

    text: str = Field(min_length=1, max_length=512)
    care_step: str = Field(
        "registration", pattern=r"^[a-z_]{1,32}$", description="registration, payment …"
    )


class FaceCardRequest(_Body):
    """A live photo (base64 JPEG) checked against the photo on the card in the reader."""

    live: str = Field(min_length=4, description="base64 of the live JPEG")
    resident_id: str = Field(min_length=1, max_length=64)


class AcknowledgeRequest(_Body):
    nurse_id: str = Field(min_length=1, max_length=64)


class Health(BaseModel):
    """The agent is up."""

    status: Literal["ok"] = "ok"
    version: str
    started: dt.datetime


def movement_out(m: Any) -> MovementOut:
    """A journal :class:`~hcmiddleware.journal.Movement` as the agent answers it."""
    data = dict(m.__dict__)
    for key in ("created_at", "updated_at"):  # the journal keeps naive UTC
        if data[key].tzinfo is None:
            data[key] = data[key].replace(tzinfo=dt.UTC)
    return MovementOut.model_validate(data)


# --- the application --------------------------------------------------------------------


def create_app(mw: Middleware, settings: AgentSection | None = None) -> FastAPI:
    """The agent's application on a started Middleware.

    The Middleware stays the caller's (``hcm agent serve`` closes it at shutdown).
    """
    from hcmiddleware.agent.console import add_console
    from hcmiddleware.agent.dll import add_dll
    from hcmiddleware.agent.services import add_services

    settings = settings if settings is not None else mw.config.agent
    state = AgentState(mw, settings)
    mw.register(state.events, state.events.hcm_plugin_name)
    app = FastAPI(
        title="hcmiddleware agent",
        version=__version__,
        description="The hcmiddleware SDK over HTTP for browser-based and non-Python HIS. "
        "Every call needs 'Authorization: Bearer <workstation token>'; errors are "
        "application/problem+json.",
        docs_url=None,
        redoc_url=None,
        responses=_PROBLEMS,
        **_without_telemetry(),
    )
    # every plain ``def`` route below runs its service call in the agent's workers
    app.router.route_class = _route_class(state)
    app.state.agent = state
    app.add_middleware(Guard, mw=mw, settings=settings, tokens=state.tokens, calls=state.calls)

    @app.exception_handler(HcmError)
    async def _typed(request: Request, exc: HcmError) -> JSONResponse:
        return _problem(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        cause = exc.__cause__
        if isinstance(cause, HcmError):  # raised while the body was read (too large)
            return _problem(cause)
        texts = {404: "there is no such endpoint", 405: "the endpoint does not take this method"}
        answer = _problem(
            AgentRequestError(
                texts.get(exc.status_code, str(exc.detail)),
                status=exc.status_code,
                hint="the endpoints and their methods are in /openapi.json",
            )
        )
        answer.headers.update(exc.headers or {})  # Allow, for a 405
        return answer

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            return _problem(AgentRequestError("the body is not valid JSON", status=400))
        problems = [
            {"loc": ".".join(str(p) for p in e.get("loc", ())), "problem": str(e.get("msg", ""))}
            for e in errors
        ]
        return _problem(
            AgentRequestError("the request's fields are not valid", status=422, problems=problems)
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("unexpected error in an agent call: %s", type(exc).__name__, exc_info=exc)
        return JSONResponse(
            {
                "type": "urn:hcmiddleware:error:InternalError",
                "title": "InternalError",
                "status": 500,
                "detail": "the agent failed unexpectedly",
                "hint": "see the agent's log; report it with the time of the call",
            },
            status_code=500,
            media_type=MEDIA_TYPE,
        )

    # the routes that touch no service, no disk and no device are coroutines: answered
    # on the event loop, with no thread at all

    @app.get("/v1/health", tags=["agent"])
    async def health() -> Health:
        """Liveness: the agent answers (no token needed)."""
        return Health(version=__version__, started=state.started)

    @app.get("/v1/me", tags=["agent"])
    async def me(who: Who) -> Caller:
        """Who the token acts as: user, role and terminal."""
        return who

    # -- the card --------------------------------------------------------------------

    @app.get("/v1/card", tags=["card"], response_model_exclude_none=False)
    def read_card(
        s: As,
        who: Who,
        parts: Annotated[
            str | None,
            Query(
                max_length=200,
                pattern=r"^[a-z_]+(,[a-z_]+)*$",
                description="comma-separated parts (docs/card.md, 'Parts'); default: all",
            ),
        ] = None,
    ) -> CardRead:
        """Authenticate and read the card in the workstation's reader (one read at a time)."""
        with state.card():
            card: CardRead = s.terminal.read(actor=who.user, parts=parts)
        return card

    @app.get("/v1/card/issuer", tags=["card"])
    def read_issuer(s: As, who: Who) -> Issuer:
        """The card's issuer data (DDF1/EF05), which needs no SAM."""
        with state.card():
            issuer: Issuer = s.terminal.read_issuer(actor=who.user)
        return issuer

    @app.get("/v1/card/parts", tags=["card"])
    async def card_parts() -> list[str]:
        """The part names a read may ask for."""
        return [p.value for p in CardPart]

    # -- the resident index ----------------------------------------------------------

    @app.get("/v1/residents/lookup", tags=["residents"])
    @on_loop
    def lookup(
        s: As,
        kind: Annotated[IdentifierKind, Query()],
        value: Annotated[str, Query(min_length=1, max_length=64)],
    ) -> Resident:
        """The resident holding this identifier (404 when nobody does)."""
        from hcmiddleware.errors import ResidentNotFoundError

        found: Resident | None = s.residents.lookup(kind, value)
        if found is None:
            raise ResidentNotFoundError(
                f"nobody in the index holds this {kind.value}",
                hint="search by name, or enrol the resident",
            )
        return found

    @app.get("/v1/residents/{resident_id}", tags=["residents"])
    @on_loop
    def get_resident(
        s: As, resident_id: Annotated[str, Path(min_length=1, max_length=64)]
    ) -> Resident:
        """One resident by the index's ID."""
        resident: Resident = s.residents.get(resident_id)
        return resident

    @app.post("/v1/residents/search", tags=["residents"])
    def search(s: As, body: SearchRequest) -> list[Candidate]:
        """Scored candidates for the demographics given."""
        found: list[Candidate] = s.residents.search(
            name=body.name,
            sex=int(body.sex) if body.sex is not None else None,
            birth_date=body.birth_date,
            phone=body.phone,
            address=body.address,
            id_number=body.id_number,
            limit=body.limit,
        )
        return found

    @app.post("/v1/residents", tags=["residents"], status_code=201)
    def enrol(s: As, body: EnrolRequest) -> Resident:
        """Enrol a resident by hand (found again when already there)."""
        resident: Resident = s.residents.enrol(**body.model_dump(), source="agent")
        return resident

    @app.post("/v1/residents/from-card", tags=["residents"])
    def enrol_from_card(s: As, who: Who) -> Resident:
        """Read the card (identity and insurance) and find or enrol its holder."""
        with state.card():
            card = s.terminal.read(actor=who.user, parts="identity,insurance,phones")
        resident: Resident = s.residents.enrol_from_card(card)
        return resident

    # -- faces -----------------------------------------------------------------------

    @app.post("/v1/faces/verify-card", tags=["faces"])
    def verify_face(s: As, who: Who, body: FaceCardRequest) -> FaceVerification:
        """Check a live photo against the photo on the card in the reader."""
        try:
            live = base64.b64decode(body.live, validate=True)
        except (binascii.Error, ValueError):
            raise AgentRequestError(
                "live is not base64", status=422, problems=[{"loc": "body.live",
                "problem": "not base64"}],
            ) from None  # fmt: skip
        with state.card():
            card = s.terminal.read(actor=who.user, parts="photo")
        result: FaceVerification = s.faces.verify_card(live, card, resident_id=body.resident_id)
        return result

    # -- the HIS ---------------------------------------------------------------------

    @app.post("/v1/his/patients", tags=["his"])
    def find_or_register(s: As, body: PatientRequest) -> HospitalPatient:
        """The resident's patient in the HIS: found, or registered (idempotent)."""
        resident = s.residents.get(body.resident_id)
        patient: HospitalPatient = s.his.find_or_register(resident)
        return patient

    @app.post("/v1/his/visits", tags=["his"], status_code=201)
    def register_visit(s: As, body: VisitRequest) -> Registration:
        """Register a visit (idempotent per request_id)."""
        registration: Registration = s.his.register_visit(body.patient, body.request)
        return registration

    @app.post("/v1/his/orders", tags=["his"])
    def orders(
        s: As, body: HospitalPatient, visit_id: Annotated[str, Query(min_length=1, max_length=64)]
    ) -> list[Order]:
        """The visit's orders."""
        found: list[Order] = s.his.orders(body, visit_id)
        return found

    @app.post("/v1/his/charges", tags=["his"])
    def charges(
        s: As, body: HospitalPatient, visit_id: Annotated[str, Query(min_length=1, max_length=64)]
    ) -> list[Charge]:
        """The visit's charges."""
        found: list[Charge] = s.his.charges(body, visit_id)
        return found

    # -- money -----------------------------------------------------------------------

    @app.post("/v1/journal/top-up", tags=["journal"])
    def top_up(s: As, who: Who, body: MoneyRequest) -> MovementOut:
        """Top up the card's account; journalled before it is sent."""
        need(s, "agent.top_up", "journal.top_up")
        provided(mw, "bank.payments", "hcm_bank_top_up")
        with state.moving_money():
            done = s.journal.top_up(
                key=body.key,
                card_number=body.card_number,
                amount=str(body.amount),
                terminal_id=who.terminal,
            )
        return movement_out(done)  # fmt: skip

    @app.post("/v1/journal/pay", tags=["journal"])
    def pay(s: As, who: Who, body: MoneyRequest) -> MovementOut:
        """Pay from the card's account; journalled before it is sent."""
        need(s, "agent.pay", "journal.pay")
        provided(mw, "bank.payments", "hcm_bank_pay")
        with state.moving_money():
            done = s.journal.pay(
                key=body.key,
                card_number=body.card_number,
                amount=str(body.amount),
                terminal_id=who.terminal,
            )
        return movement_out(done)  # fmt: skip

    @app.get("/v1/journal/{transaction_id}", tags=["journal"])
    def movement(
        s: As, transaction_id: Annotated[str, Path(min_length=1, max_length=64)]
    ) -> MovementOut:
        """One journal entry."""
        return movement_out(s.journal.get(transaction_id))

    @app.get("/v1/journal", tags=["journal"])
    def movements(
        s: As,
        state_: Annotated[PaymentStatus | None, Query(alias="state")] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
    ) -> list[MovementOut]:
        """Journal entries, oldest first."""
        return [movement_out(m) for m in s.journal.entries(state=state_, limit=limit)]

    # -- the e-card ------------------------------------------------------------------

    @app.post("/v1/ehc/verify", tags=["ehc"])
    def ehc_verify(s: As, who: Who, body: EhcVerifyRequest) -> EhcVerification:
        """Check an e-card code at this terminal for this care step."""
        result: EhcVerification = s.ehc.verify(
            body.text, care_step=body.care_step, terminal_id=who.terminal, actor=who.user
        )
        return result

    # -- the ward --------------------------------------------------------------------

    @app.post("/v1/ward/verify", tags=["ward"])
    def ward_verify(s: As, body: BedsideScan) -> Verdict:
        """The seven verifications of a scan against its order; nothing executed."""
        verdict: Verdict = s.ward.verify(body)
        return verdict

    @app.post("/v1/ward/execute", tags=["ward"])
    def ward_execute(s: As, body: BedsideScan) -> BedsideExecution:
        """Check and record the order carried out."""
        done: BedsideExecution = s.ward.execute(body)
        return done

    @app.get("/v1/ward/alarms", tags=["ward"])
    def ward_alarms(
        s: As,
        open_only: bool = True,
        limit: Annotated[int, Query(ge=1, le=500)] = 200,
    ) -> list[Alarm]:
        """Alarms at the nurse station (open ones by default)."""
        found: list[Alarm] = s.ward.alarms(open_only=open_only, limit=limit)
        return found

    @app.post("/v1/ward/alarms/{alarm_id}/acknowledge", tags=["ward"])
    def ward_ack(
        s: As,
        body: AcknowledgeRequest,
        alarm_id: Annotated[str, Path(min_length=1, max_length=64)],
    ) -> Alarm:
        """A nurse takes the alarm."""
        alarm: Alarm = s.ward.acknowledge(alarm_id, body.nurse_id)
        return alarm

    # -- events ----------------------------------------------------------------------

    @app.get(
        "/v1/events",
        tags=["events"],
        response_class=StreamingResponse,
        responses={200: {"content": {"text/event-stream": {}}, "description": "SSE"}},
    )
    def events(s: As) -> StreamingResponse:
        """Server-Sent Events: ``card.inserted``, ``card.removed``, ``ward.alarm``.

        Browsers read it with ``fetch`` (the token goes in the header).
        """
        kinds = {"card.inserted", "card.removed"}
        if s.may(AGENT_OPERATIONS["events.ward"]):
            kinds.add("ward.alarm")
        return StreamingResponse(
            state.events.stream(frozenset(kinds)),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    add_services(app, state)
    add_dll(app, state)
    add_console(app, state)
    return app


def _without_telemetry() -> dict[str, Any]:
    """FastAPI's own OpenTelemetry spans, metrics and logs off, where this FastAPI has
    them: a span carries the path's values and the query (an ID number), and they cost
    every request a look at the providers. The access log and the audit log are the
    agent's record of its calls."""
    if "telemetry" not in inspect.signature(FastAPI.__init__).parameters:
        return {}
    off = ("tracing", "metrics", "logs", "operation_spans", "auto_configure")
    return {"telemetry": dict.fromkeys(off, False)}


def _route_class(state: AgentState) -> type[APIRoute]:
    """FastAPI's route, with a plain ``def`` endpoint run in the agent's workers
    (:func:`~hcmiddleware.agent.workers.off_loop`): one hand-over to a thread per
    request, the answer validated on the loop; one marked
    :func:`~hcmiddleware.agent.workers.on_loop` runs on the loop, its audit entries
    committed by the agent's committer."""

    class _Route(APIRoute):
        def __init__(self, path: str, endpoint: Any, **kwargs: Any) -> None:
            wrapped = route_for(endpoint, state.workers, state.committer, lambda: state.mw.engine)
            super().__init__(path, wrapped, **kwargs)

    return _Route


def _problem(exc: HcmError) -> JSONResponse:
    headers = {}
    retry = getattr(exc, "retry_after", None)
    if isinstance(retry, int | float):
        headers["Retry-After"] = str(max(1, int(retry + 0.999)))
    return JSONResponse(
        problem_of(exc), status_code=status_of(exc), media_type=MEDIA_TYPE, headers=headers
    )
