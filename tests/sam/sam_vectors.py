"""The golden vectors of docs/card-spec.md and key sets built on them, shared by the SAM tests."""

from __future__ import annotations

from typing import Any

h = bytes.fromhex

# docs/card-spec.md, "Golden vectors"
SM4_MASTER = h("00112233445566778899AABBCCDDEEFF")
TDES_MASTER = h("404142434445464748494A4B4C4D4E4F")
CARD_FACTOR = h("3132333435363738")
CHALLENGE = h("A1B2C3D4E5F60718")
SM4_DK = h("D48BC0AF42D96CDA7A0F1CC3F844A9D6")
SM4_CRYPTOGRAM = h("2D054A640E968AF8")
SM4_SESSION_KEY = h("ABA11DE4DE49796A86A45780D0DFF392")
SM_TLV = h("1003616263")
SM_HEADER = h("04DC0104")
SM_APDU = h("04DC0104144C53C4C8A5E4DC5B6A2A9E72D2D7F77AEA439CB2")
TDES_DK = h("EE790E8F0F93B55490A20B55E6BF10F1")
TDES_CRYPTOGRAM = h("E8CFDBA0BA443566")

REFS = ["01", "02", "03", "04", "11", "12", "13", "14", "21"]


def golden_keyset_data(alg: str = "SM4", city_code: str = "21") -> dict[str, Any]:
    """Every ref under the golden master key, so each reproduces the golden vectors."""
    master = SM4_MASTER if alg == "SM4" else TDES_MASTER
    return {
        "city_code": city_code,
        "keys": [{"ref": r, "alg": alg, "master": master.hex().upper()} for r in REFS],
    }
