"""Identify a patient by the e-health card's QR code (电子健康卡) instead of the card.

Run it: ``python examples/ehc_identification.py`` (needs the ``ehc`` extra).
``_site.site()`` stands in for the hospital (the reference HIS over HL7/MLLP, the
sample card) and is given an ``[ehc]`` section: an issuer key pair made for this run,
so the hospital issues e-cards and signs their codes itself (a site using the
provincial platform enables the ehc-platform adapter instead).

1. the resident, known from the physical card, is issued an e-card;
2. their phone shows a dynamic (short-lived, signed) code: rendered here as a PNG QR;
3. the kiosk's scanner decodes the picture; the code is verified (signature, expiry,
   revocation) and finds the same resident and the same hospital patient;
4. the same code shown twice at the same step is refused (a screenshot replayed).
"""

from __future__ import annotations

from _site import site

from hcmiddleware.ehc import qr
from hcmiddleware.errors import EhcReplayError
from hcmiddleware.flows.outpatient import OutpatientFlow
from hcmiddleware.testing import ehc_keys


def main() -> None:
    # [ehc]: a fresh SM2 issuer key pair in the run's folder (a site's comes from its CA)
    with site(sections=lambda folder: {"ehc": ehc_keys(folder / "ehc", algorithm="sm2")}) as s:
        desk = OutpatientFlow(s.mw, actor="desk-01")
        by_card = desk.identify(s.card)  # the card: found in the index (or enrolled)
        patient = desk.patient(by_card)
        print(f"by card: hospital patient {patient.patient_id}")

        ecard_id = s.mw.ehc.issue(by_card.resident.resident_id, actor="ehc-issuer")
        code = s.mw.ehc.dynamic_code(ecard_id)  # what the resident's phone shows
        picture = qr.render(code, kind="png")
        (s.folder / "ecard-code.png").write_bytes(picture)
        print(f"e-card {ecard_id[:8]}… issued; its code as a {len(picture)}-byte PNG QR")

        kiosk = OutpatientFlow(s.mw, actor="kiosk-01")
        scanned = qr.decode_image(picture)  # the scanner's job: picture → text
        who = kiosk.identify_ecard(scanned, care_step="registration")
        assert who.ehc is not None  # how the code was checked
        print(f"code verified {who.ehc.checked} (key {who.ehc.key_id}), {who.ehc.kind}")
        same = who.resident.resident_id == by_card.resident.resident_id
        print(f"by e-card: same resident {same}, hospital patient {kiosk.patient(who).patient_id}")
        try:
            kiosk.identify_ecard(scanned, care_step="registration")
        except EhcReplayError as exc:
            print(f"shown again for registration: refused ({exc.hint})")


if __name__ == "__main__":
    main()
