"""The journal's states and which changes between them are allowed.

``pending``  written, not yet handed to the bank or insurer (never sent)
``sent``     about to be / being sent: the remote side may or may not have it
``confirmed``the remote side confirmed the movement
``failed``   refused by the remote side, or never sent
``unknown``  sent, but the answer was lost (timeout, dropped connection, fault)
``reversed`` the remote side confirmed the reversal (冲正); no money moved
"""

from __future__ import annotations

from hcmiddleware.models import PaymentStatus

__all__ = ["ALLOWED", "FINAL", "IN_FLIGHT", "PaymentStatus"]

P = PaymentStatus

#: state -> the states it may move to
ALLOWED: dict[PaymentStatus, frozenset[PaymentStatus]] = {
    P.PENDING: frozenset({P.SENT, P.FAILED}),
    P.SENT: frozenset({P.CONFIRMED, P.FAILED, P.UNKNOWN, P.REVERSED}),
    P.UNKNOWN: frozenset({P.CONFIRMED, P.FAILED, P.REVERSED}),
    P.CONFIRMED: frozenset(),
    P.FAILED: frozenset(),
    P.REVERSED: frozenset(),
}

#: states from which nothing changes any more
FINAL = frozenset(s for s, nxt in ALLOWED.items() if not nxt)
#: states that recovery must settle
IN_FLIGHT = frozenset({P.PENDING, P.SENT, P.UNKNOWN})
