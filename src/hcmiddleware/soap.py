"""The client side every SOAP money adapter shares (bank, insurer): zeep, errors, outcome.

An adapter subclasses :class:`SoapAdapter`, names its WSDL binding and the party it
talks to, and calls :meth:`SoapAdapter._call`. What that gives it:

* the zeep client is made on first use, so a bank that is down when the hospital system
  starts does not stop the middleware from starting;
* WS-Security credentials from the settings (the password is a secret);
* every failure mapped the way the journal needs it: a SOAP fault is
  :class:`~hcmiddleware.errors.RemoteFaultError`; a connection refused (nothing sent) is
  :class:`~hcmiddleware.errors.RemoteUnavailableError`; a lost connection or a timeout
  after sending is :class:`~hcmiddleware.errors.OutcomeUnknownError` — never a failure;
  an unreadable answer is :class:`~hcmiddleware.errors.MalformedResponseError`.

Needs the ``soap`` extra (zeep, lxml, requests).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, ClassVar

import requests
from lxml import etree  # type: ignore[import-untyped]
from pydantic import Field
from urllib3.exceptions import NewConnectionError
from zeep import Client, Settings
from zeep.exceptions import Error as ZeepError
from zeep.exceptions import Fault, TransportError
from zeep.transports import Transport
from zeep.wsse.username import UsernameToken

from hcmiddleware.config import Secret, SettingsModel
from hcmiddleware.errors import (
    MalformedResponseError,
    MoneyError,
    OutcomeUnknownError,
    RemoteFaultError,
    RemoteUnavailableError,
)
from hcmiddleware.hookspecs import hookimpl
from hcmiddleware.runtime import Middleware

__all__ = ["SoapAdapter", "SoapSettings", "never_sent"]


class SoapSettings(SettingsModel):
    """The settings every SOAP adapter takes; subclasses give ``wsdl`` its default."""

    wsdl: str = Field(description="WSDL URL or file")
    endpoint: str | None = Field(None, description="service address; default the WSDL's")
    timeout: float = Field(5.0, gt=0, le=120, description="seconds per SOAP call")
    username: str | None = None
    password: Secret | None = None


def never_sent(exc: requests.RequestException) -> bool:
    """True when the connection was refused or never established: nothing left."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(reason, NewConnectionError)


class SoapAdapter:
    """Base of a SOAP adapter plugin: settings, the lazy zeep service, mapped errors."""

    #: the plugin's name (entry point and ``[plugins.<name>]``)
    NAME: ClassVar[str]
    #: the WSDL binding used when ``endpoint`` overrides the WSDL's address
    BINDING: ClassVar[str]
    #: who is on the other side, for messages: "bank", "insurer"
    PARTY: ClassVar[str]
    #: what the adapter is called in messages: "bank", "insurance"
    KIND: ClassVar[str]
    #: the settings model (a :class:`SoapSettings` with the packaged WSDL as default)
    SETTINGS: ClassVar[type[SoapSettings]]

    def __init__(self) -> None:
        # the subclass's settings model gives every field, the WSDL included, a default
        self.settings: SoapSettings = self.SETTINGS()  # type: ignore[call-arg]
        self.client: Client | None = None
        self._service: Any = None
        self._configured = False
        self._lock = threading.Lock()

    # -- setup -----------------------------------------------------------------------

    @hookimpl
    def hcm_add_config(self, settings: Any) -> None:
        """Declare the ``[plugins.<name>]`` settings model."""
        settings.add(self.NAME, self.SETTINGS)

    def _take_settings(self, middleware: Middleware) -> None:
        """Take the validated settings; the client is made on first use."""
        configured = middleware.plugin_settings(self.NAME)
        if isinstance(configured, self.SETTINGS):
            self.settings = configured
        self.client = None
        self._service = None
        self._configured = True

    @hookimpl
    def hcm_unconfigure(self) -> None:
        """Close the HTTP session and forget the client."""
        with self._lock:
            if self.client is not None:
                self.client.transport.session.close()
            self._service = self.client = None
            self._configured = False

    @staticmethod
    def make_client(settings: SoapSettings) -> Client:
        """A zeep client for ``settings`` (also used to render golden envelopes)."""
        transport = Transport(  # type: ignore[no-untyped-call]
            timeout=settings.timeout, operation_timeout=settings.timeout
        )
        wsse = None
        if settings.username is not None:
            password = settings.password.get_secret_value() if settings.password else ""
            wsse = UsernameToken(settings.username, password)  # type: ignore[no-untyped-call]
        return Client(  # type: ignore[no-untyped-call]
            settings.wsdl,
            transport=transport,
            wsse=wsse,
            settings=Settings(strict=True, xml_huge_tree=False),
        )

    def _ensure_service(self) -> Any:
        with self._lock:
            if self._service is None:
                try:
                    self.client = self.make_client(self.settings)
                    self._service = (
                        self.client.create_service(self.BINDING, self.settings.endpoint)  # type: ignore[no-untyped-call]
                        if self.settings.endpoint
                        else self.client.service
                    )
                except (requests.RequestException, OSError, ZeepError, etree.XMLSyntaxError) as exc:
                    self.client = None
                    raise RemoteUnavailableError(
                        f"the {self.PARTY}'s service description cannot be loaded "
                        f"({type(exc).__name__})",
                        hint=f"check [plugins.{self.NAME}] wsdl and the network; nothing was sent",
                    ) from None
            return self._service

    # -- calls -----------------------------------------------------------------------

    def _call(self, operation: str, transaction_id: str | None = None, **kwargs: Any) -> Any:
        if not self._configured:
            raise MoneyError(
                f"the {self.KIND} adapter is not configured", hint="start the Middleware first"
            )
        method: Callable[..., Any] = getattr(self._ensure_service(), operation)
        party = self.PARTY
        try:
            return method(**kwargs)
        except Fault as fault:
            raise RemoteFaultError(
                f"the {party} refused {operation}: {fault.message}",
                fault_code=str(fault.code or "Server"),
                transaction_id=transaction_id,
            ) from None
        except (requests.ConnectTimeout, requests.ConnectionError) as exc:
            if never_sent(exc):
                raise RemoteUnavailableError(
                    f"the {party} cannot be reached for {operation} ({type(exc).__name__})",
                    transaction_id=transaction_id,
                ) from None
            raise OutcomeUnknownError(
                f"no answer from the {party} to {operation} ({type(exc).__name__})",
                transaction_id=transaction_id,
            ) from None
        except requests.Timeout as exc:
            raise OutcomeUnknownError(
                f"no answer from the {party} to {operation} ({type(exc).__name__})",
                transaction_id=transaction_id,
            ) from None
        except (TransportError, ZeepError, etree.XMLSyntaxError, ValueError) as exc:
            raise MalformedResponseError(
                f"the {party}'s answer to {operation} is not valid ({type(exc).__name__})",
                transaction_id=transaction_id,
            ) from None
