"""The core's own audit sink runs in the caller's thread; every other plugin keeps its
worker thread and timeout. A trusted plugin's failure is still contained."""

from __future__ import annotations

import threading

from hcmiddleware import Middleware, hookimpl
from hcmiddleware.builtin import audit_log
from hcmiddleware.models import AuditEvent
from hcmiddleware.testing.plugin import MiddlewareFactory


class Sink:
    """Notes the thread each audit event reaches it in; fails when told to."""

    def __init__(self) -> None:
        self.threads: list[int] = []
        self.fail = False

    @hookimpl
    def hcm_audit_event(self, event: AuditEvent) -> None:
        self.threads.append(threading.get_ident())
        if self.fail:
            raise RuntimeError("sink bug")


def test_a_trusted_sink_runs_in_the_callers_thread(
    hcm_make_middleware: MiddlewareFactory,
) -> None:
    sink = Sink()
    mw: Middleware = hcm_make_middleware(plugins={"sink": sink})
    mw.audit("card.read", actor="kiosk-01")
    assert sink.threads
    assert sink.threads[-1] != threading.get_ident()  # a plugin: its worker thread
    mw.dispatcher.trust("sink")
    mw.audit("card.read", actor="kiosk-01")
    assert sink.threads[-1] == threading.get_ident()
    # still contained: a failing notification is logged, the act stands
    sink.fail = True
    entry = mw.audit("card.read", actor="kiosk-01")
    assert mw.audit.entries()[-1].seq == entry.seq
    assert mw.dispatcher.health["sink"].failures == 1


def test_only_the_audit_log_sink_is_trusted_by_default(
    hcm_make_middleware: MiddlewareFactory,
) -> None:
    mw: Middleware = hcm_make_middleware(plugins={"sink": Sink()})
    assert mw.dispatcher._trusted == {audit_log.NAME}
