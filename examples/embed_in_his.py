"""How a HIS embeds hcmiddleware: read the card, find or register the patient, register.

Run it after `pip install -e . -e adapters/his/sample`:

    python examples/embed_in_his.py

`register_at_the_desk` is the whole story a HIS vendor writes; everything else here
only stands in for a hospital's installation: a config with the sample HIS adapter
(a hospital enables its own in its TOML file), the index's keys (`hcm init` writes them
for a real installation) and the software card in place of a card in the reader.
"""

from __future__ import annotations

import base64
import os
import tempfile
from datetime import datetime, timedelta
from importlib.resources import files
from pathlib import Path

from hcmiddleware import HcmError, Middleware, Registration, RegistrationRequest
from hcmiddleware.card.emulator import EmulatedCard
from hcmiddleware.card.transport import Transport
from hcmiddleware.config import parse_config
from hcmiddleware.sam.samples import TEST_ISSUER_KEYS


def register_at_the_desk(mw: Middleware, reader: Transport | None = None) -> Registration:
    """The patient hands over the card; the desk registers them for internal medicine."""
    card = mw.terminal.read(reader)  # authenticated with the SAM, audited
    resident = mw.residents.enrol_from_card(card)  # found in the index, or enrolled
    patient = mw.his.find_or_register(resident, card=card)  # the HIS's own patient ID
    slot = datetime.now().replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    request = RegistrationRequest(
        department_code="NEI",
        slot_start=slot,
        slot_end=slot + timedelta(minutes=30),
        fee="12.00",
        request_id=f"{patient.patient_id}-NEI-{slot:%Y%m%d%H}",  # pressing twice registers once
    )
    return mw.his.register_visit(patient, request)


def installation(workdir: Path) -> Middleware:
    """A stand-in for the hospital's config file and keys."""
    keys = workdir / "keys"
    keys.mkdir(mode=0o700)
    for name in ("master", "index"):
        (keys / name).write_text(base64.b64encode(os.urandom(32)).decode())
        (keys / name).chmod(0o600)
    config = parse_config(
        {
            "middleware": {"data_dir": str(workdir / "data"), "institution_code": "210100000001"},
            "sam": {"keys": str(TEST_ISSUER_KEYS)},  # the software SAM's test keys
            "empi": {
                "master_keys": {"k1": {"file": str(keys / "master")}},
                "index_key": {"file": str(keys / "index")},
            },
            "plugins": {"enabled": ["sample-his"], "sample-his": {"hospital_code": "H0001"}},
        }
    )
    return Middleware(config)


def main() -> int:
    sample = Path(str(files("hcmiddleware.card.samples"))) / "resident-profile.json"
    card_in_reader = EmulatedCard.from_files(sample, TEST_ISSUER_KEYS)
    try:
        with installation(Path(tempfile.mkdtemp(prefix="hcm-example-"))) as mw:
            first = register_at_the_desk(mw, card_in_reader)
            again = register_at_the_desk(mw, card_in_reader)
            queue = mw.his.queue_position(first)
    except HcmError as exc:
        print(f"could not register: {exc}")
        return 1
    print(f"patient {first.patient_id}: registration {first.registration_id}")
    print(f"registered twice, one registration: {again.registration_id == first.registration_id}")
    print(f"queue number {queue.queue_number}, about {queue.estimated_wait_minutes} min")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
