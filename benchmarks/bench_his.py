"""HIS adapters: one hook call's wall time against the reference HIS on loopback.

What an outpatient registration pays to the HIS: the patient lookup and the visit
registration (a write plus the read-back), for each adapter, and where the HL7 time
goes (one raw MLLP round trip; hl7apy's strict validation of one message, which the
adapter runs before every send and the reference HIS on every receipt).
"""

from __future__ import annotations

import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from hcm_his_hl7 import MllpClient, RetryPolicy, messages
from hcm_his_reference import ReferenceHis

from hcmiddleware import Middleware
from hcmiddleware.config import parse_config
from hcmiddleware.models import RegistrationRequest, Resident

N = 100
HOSPITAL = "H0001"


def timed(fn: Callable[[], Any], n: int = N) -> list[float]:
    fn()  # warm up: connection pools, imports, the HIS's caches
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def row(name: str, samples: list[float]) -> str:
    samples.sort()
    p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))]
    return f"{name:<62} {statistics.median(samples):>8.2f} {p99:>8.2f}"


def request() -> RegistrationRequest:
    start = datetime.now().replace(microsecond=0, second=0) + timedelta(days=1)
    return RegistrationRequest(
        department_code="NEI",
        slot_start=start,
        slot_end=start + timedelta(minutes=30),
        request_id=uuid.uuid4().hex,
    )


def adapter_rows(
    name: str, settings: dict[str, Any], data_dir: Path, label: str | None = None
) -> list[str]:
    label = label or name
    config = parse_config(
        {
            "middleware": {"data_dir": str(data_dir / label)},
            "plugins": {"enabled": [name], name: settings},
        }
    )
    out = []
    with Middleware(config) as mw:
        resident = Resident(resident_id=f"bench-{uuid.uuid4().hex[:8]}", name="张三")
        patient = mw.hooks.hcm_his_register_patient(
            resident=resident, card=None, hospital_code=HOSPITAL
        )
        lookup = timed(
            lambda: mw.hooks.hcm_his_lookup_patient(resident=resident, hospital_code=HOSPITAL)
        )
        out.append(row(f"{label}: lookup_patient", lookup))
        register = timed(
            lambda: mw.hooks.hcm_his_register_visit(patient=patient, request=request())
        )
        out.append(row(f"{label}: register_visit (new request)", register))
    return out


def dbview_rows(data_dir: Path) -> list[str]:
    """The database-view adapter on the reference HIS's PostgreSQL face, if it is up."""
    try:
        import psycopg
        from hcm_his_reference import dbview
    except ImportError:
        return ["his-dbview: psycopg not installed, skipped"]
    dsn = "host=127.0.0.1 port=5432 dbname=test user=postgres"
    schema = f"his_bench_{uuid.uuid4().hex[:8]}"
    try:
        with psycopg.connect(dsn, connect_timeout=2) as conn:
            dbview.install(conn, schema)
    except psycopg.OperationalError:
        return ["his-dbview: no PostgreSQL on 127.0.0.1:5432, skipped"]
    try:
        return adapter_rows(
            "his-dbview",
            {
                "url": "postgresql+psycopg://postgres@127.0.0.1:5432/test",
                "session_sql": [f"SET search_path TO {schema}"],
            },
            data_dir,
        )
    finally:
        with psycopg.connect(dsn) as conn:
            dbview.drop(conn, schema)


def main() -> None:
    rows: list[str] = []
    with tempfile.TemporaryDirectory() as tmp, ReferenceHis(Path(tmp) / "his.db") as his:
        host, port = his.mllp_address
        header = messages.Header("HCM", "H", "REFHIS", HOSPITAL)
        client = MllpClient(host, port, RetryPolicy())
        now = datetime.now().replace(microsecond=0)

        def raw() -> None:
            control = uuid.uuid4().hex[:20]
            client.exchange(messages.qbp_pix(header, control, now, "x", "HCMEMPI", "PI"), control)

        rows.append(row("MLLP round trip, QBP^Q23 (no validation here)", timed(raw)))
        text = messages.qbp_pix(header, "C1", now, "x", "HCMEMPI", "PI")
        rows.append(
            row("hl7apy strict validation of one QBP^Q23", timed(lambda: messages.validate(text)))
        )
        check = messages.StrictCheck()
        check(text)
        rows.append(row("the same verdict, shape known (StrictCheck)", timed(lambda: check(text))))
        rows += adapter_rows(
            "his-hl7",
            {"host": host, "port": port, "assigning_authority": HOSPITAL},
            Path(tmp),
        )
        rows += adapter_rows(
            "his-hl7",
            {
                "host": host,
                "port": port,
                "assigning_authority": HOSPITAL,
                "validation_cache": False,
            },
            Path(tmp),
            label="his-hl7 (validation_cache off)",
        )
        rows += adapter_rows(
            "his-hl7",
            {
                "host": host,
                "port": port,
                "assigning_authority": HOSPITAL,
                "validate_outbound": False,
            },
            Path(tmp),
            label="his-hl7 (validate_outbound off)",
        )
        rows += adapter_rows("his-fhir", {"base_url": his.fhir_url}, Path(tmp))
        rows += dbview_rows(Path(tmp))
    print(f"{'against the reference HIS on loopback (ms)':<62} {'p50':>8} {'p99':>8}")
    for line in rows:
        print(line)


if __name__ == "__main__":
    main()
