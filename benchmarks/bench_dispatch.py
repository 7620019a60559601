"""Cost of the runtime's containment: a hook call through the dispatcher vs plain pluggy.

Every adapter call pays this; the outpatient budget gives the middleware 20 ms in all.
"""

from __future__ import annotations

import statistics
import time

from hcmiddleware import Middleware
from hcmiddleware.config import parse_config
from hcmiddleware.models import HospitalPatient, Resident

N = 5_000
RESIDENT = Resident(resident_id="r", name="n")
ANSWER = HospitalPatient(hospital_code="H", patient_id="P", resident_id="r")


class His:
    def hcm_his_lookup_patient(self, resident: Resident) -> HospitalPatient:
        return ANSWER


def timed(fn: object, n: int = N) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()  # type: ignore[operator]
        out.append((time.perf_counter() - t0) * 1e6)
    return out


def row(name: str, samples: list[float]) -> str:
    samples.sort()
    p99 = samples[int(len(samples) * 0.99)]
    return f"{name:<44} {statistics.median(samples):>9.1f} {p99:>9.1f}"


def main() -> None:
    with Middleware(plugins={"his": His()}) as mw:
        threaded = timed(
            lambda: mw.hooks.hcm_his_lookup_patient(resident=RESIDENT, hospital_code="H")
        )
        plain = timed(
            lambda: mw.pm.hook.hcm_his_lookup_patient(resident=RESIDENT, hospital_code="H")
        )
    print(f"{'hook call (µs)':<44} {'p50':>9} {'p99':>9}")
    print(row("pluggy, direct (no containment)", plain))
    print(row("hcmiddleware dispatcher (thread + timeout)", threaded))
    cfg = parse_config({"plugins": {"enabled": []}})
    t0 = time.perf_counter()
    for _ in range(50):
        Middleware(cfg).close()
    print(f"{'Middleware start + close (ms)':<44} {(time.perf_counter() - t0) / 50 * 1e3:>9.2f}")


if __name__ == "__main__":
    main()
