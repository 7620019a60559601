"""The security access module: key sets, card-key cryptography and the SAMs.

- :mod:`~hcmiddleware.sam.crypto` — SM4/3DES constructions of docs/card-spec.md
- :mod:`~hcmiddleware.sam.keyset` — the issuer's key-set file, keys masked
- :mod:`~hcmiddleware.sam.keyrefs` — which key may be used for what
- :mod:`~hcmiddleware.sam.base` — the :class:`Sam` protocol the card session uses
- :mod:`~hcmiddleware.sam.software` — :class:`SoftwareSam`, keys from a file
- :mod:`~hcmiddleware.sam.commands` — the SAM card's APDU command set
- :mod:`~hcmiddleware.sam.emulated` — :class:`EmulatedSam`, a SAM card in software
- :mod:`~hcmiddleware.sam.pcsc` — :class:`PcscSam`, a SAM card driven by APDU
"""

from __future__ import annotations

from hcmiddleware.sam.base import Sam
from hcmiddleware.sam.crypto import Algorithm
from hcmiddleware.sam.emulated import EmulatedSam
from hcmiddleware.sam.keyset import KeySet, SecretKey, load_keyset
from hcmiddleware.sam.pcsc import PcscSam
from hcmiddleware.sam.software import SoftwareSam

__all__ = [
    "Algorithm",
    "EmulatedSam",
    "KeySet",
    "PcscSam",
    "Sam",
    "SecretKey",
    "SoftwareSam",
    "load_keyset",
]
