"""The health card: APDUs, the file map and codecs, the card session, transports, emulator.

The entry points most callers need::

    from hcmiddleware.card import CardSession
    from hcmiddleware.card.pcsc import PcscTransport      # needs the [pcsc] extra
    session = CardSession(PcscTransport(), sam)
    read = session.read_all()                   # or session.read(parts="identity,insurance")

PC/SC modules (``pcsc``, ``monitor``, ``vpcd``) are not imported here, so the package
works without pyscard.
"""

from __future__ import annotations

from hcmiddleware.card.data import (
    Address,
    Allergy,
    Cardholder,
    CardRead,
    Clinical,
    Contact,
    Immunisation,
    Issuer,
    Personal,
    Validity,
    VisitRecord,
)
from hcmiddleware.card.emulator import EmulatedCard
from hcmiddleware.card.field import FieldProfile
from hcmiddleware.card.filemap import CardPart, VisitKind
from hcmiddleware.card.guard import PROCESS_GUARD, KeyGuard
from hcmiddleware.card.image import CardImage, load_image, personalise, write_image
from hcmiddleware.card.session import CardSession
from hcmiddleware.card.transport import ReplayTransport, TracingTransport, Transport

__all__ = [
    "PROCESS_GUARD",
    "Address",
    "Allergy",
    "CardImage",
    "CardPart",
    "CardRead",
    "CardSession",
    "Cardholder",
    "Clinical",
    "Contact",
    "EmulatedCard",
    "FieldProfile",
    "Immunisation",
    "Issuer",
    "KeyGuard",
    "Personal",
    "ReplayTransport",
    "TracingTransport",
    "Transport",
    "Validity",
    "VisitKind",
    "VisitRecord",
    "load_image",
    "personalise",
    "write_image",
]
