"""Enrolment with a face check: the person at the desk is the cardholder, and their
face is stored for the kiosks' later checks (人脸核验与建档).

Run it: ``python examples/face_enrolment.py`` (needs the ``face`` extra).
``_site.site()`` stands in for the hospital (the reference HIS over HL7/MLLP, the
sample card); the desk camera's picture is the sample live photo shipped with the SDK.

1. read the whole card, the photo included, and find or enrol the resident;
2. compare the camera's picture with the card photo (a distance under the threshold
   of ``[face]`` is a match); a picture with no usable face is refused, typed;
3. store the face template — encrypted with the index's keys — and find the resident
   again from a new picture alone (1:N search, e.g. for a patient without their card).
"""

from __future__ import annotations

import io

from _site import site
from PIL import Image

from hcmiddleware.errors import FaceMismatchError
from hcmiddleware.face.samples import KIOSK_LIVE_PHOTO
from hcmiddleware.flows.outpatient import OutpatientFlow


def a_picture_without_a_face() -> bytes:
    """What a camera sees with nobody in front of it: a grey JPEG."""
    out = io.BytesIO()
    Image.new("RGB", (480, 640), (128, 128, 128)).save(out, format="JPEG")
    return out.getvalue()


def main() -> None:
    with site() as s:
        flow = OutpatientFlow(s.mw, actor="registration-1")
        who = flow.identify(s.card, parts="all")  # "all": the photo (EF07) is read too
        resident_id = who.resident.resident_id
        print(f"resident {resident_id[:8]}… in the index")

        try:  # nobody in front of the camera
            flow.check_face(who, a_picture_without_a_face(), transport=s.card)
        except FaceMismatchError as exc:
            print(f"empty picture: refused ({exc.status})")

        live = KIOSK_LIVE_PHOTO.read_bytes()  # the desk camera's picture
        check = flow.check_face(who, live, transport=s.card)
        print(f"face check: the cardholder, distance {check.distance:.2f} ≤ {check.threshold:.2f}")

        stored = s.mw.faces.enrol(resident_id, live, actor="registration-1")
        print(f"face template {stored.status}")
        (best, *_) = s.mw.faces.search(live, top=1)  # a later visit, no card at hand
        print(f"found by face alone: same resident {best.resident_id == resident_id}")


if __name__ == "__main__":
    main()
