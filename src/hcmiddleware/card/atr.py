"""Answer-to-reset: the historical bytes, the chip serial and the card factor.

The health card's historical bytes end with its chip serial; the last 8 of them are the
card factor of key diversification (docs/card-spec.md, "ATR and the card factor").
"""

from __future__ import annotations

from hcmiddleware.errors import CardProtocolError

__all__ = ["build_atr", "card_factor", "historical_bytes"]


def historical_bytes(atr: bytes) -> bytes:
    """The historical bytes of an ISO/IEC 7816-3 ATR; a malformed ATR is a CardProtocolError."""
    atr = bytes(atr)
    if len(atr) < 2 or atr[0] not in (0x3B, 0x3F):
        raise CardProtocolError("the card's answer-to-reset is not ISO 7816 (bad TS)")
    t0 = atr[1]
    count = t0 & 0x0F
    pos = 2
    indicator = t0 >> 4
    protocols: set[int] = set()
    while True:
        # TA, TB, TC present per bits 5-7; TD (bit 8) chains to the next group.
        pos += bin(indicator & 0x07).count("1")
        if not indicator & 0x08:
            break
        if pos >= len(atr):
            raise CardProtocolError("the card's answer-to-reset is truncated")
        td = atr[pos]
        pos += 1
        protocols.add(td & 0x0F)
        indicator = td >> 4
    end = pos + count
    if end > len(atr):
        raise CardProtocolError("the card's answer-to-reset is truncated")
    tck = 1 if protocols - {0} else 0
    if len(atr) != end + tck:
        raise CardProtocolError("the card's answer-to-reset has a wrong length")
    if tck:
        check = 0
        for byte in atr[1:]:
            check ^= byte
        if check:
            raise CardProtocolError("the card's answer-to-reset fails its checksum")
    return atr[pos:end]


def card_factor(atr: bytes) -> bytes:
    """The last 8 historical bytes: the card's diversification factor."""
    hist = historical_bytes(atr)
    if len(hist) < 8:
        raise CardProtocolError(
            "the card's answer-to-reset carries no chip serial",
            hint="check it is a resident health card",
        )
    return hist[-8:]


def build_atr(historical: bytes) -> bytes:
    """A T=1 ATR (``3B 8x 80 01``) carrying ``historical`` (at most 15 bytes), with TCK."""
    if len(historical) > 15:
        raise ValueError("an ATR carries at most 15 historical bytes")
    body = bytes((0x80 | len(historical), 0x80, 0x01)) + bytes(historical)
    check = 0
    for byte in body:
        check ^= byte
    return b"\x3b" + body + bytes((check,))
