"""``hcm-his-reference``: run the reference HIS in the foreground until Ctrl-C."""

from __future__ import annotations

import argparse
import contextlib
import signal
import threading

from hcm_his_reference import ReferenceHis


def main(argv: list[str] | None = None) -> None:
    """Parse the command line, start the listeners, wait for a signal."""
    parser = argparse.ArgumentParser(prog="hcm-his-reference", description=__doc__)
    parser.add_argument("--store", default="reference-his.db", help="SQLite file")
    parser.add_argument("--hospital-code", default="H0001")
    parser.add_argument("--mllp-port", type=int, default=2575)
    parser.add_argument("--fhir-port", type=int, default=8080)
    parser.add_argument(
        "--full-validation",
        action="store_true",
        help="parse every HL7 message in full with hl7apy (no per-structure cache)",
    )
    args = parser.parse_args(argv)
    his = ReferenceHis(
        args.store,
        hospital_code=args.hospital_code,
        mllp_port=args.mllp_port,
        fhir_port=args.fhir_port,
        validation_cache=not args.full_validation,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with his:
        host, port = his.mllp_address
        print(f"MLLP on {host}:{port}, FHIR at {his.fhir_url} (Ctrl-C stops)", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()


if __name__ == "__main__":
    main()
