"""A reference hospital information system (HIS) to test HIS adapters against.

It keeps its own SQLite store and speaks the two ways hospitals are integrated:
HL7 v2.5 over MLLP and FHIR R4 over HTTP, both on loopback. Tests start it, point an
adapter at it, and flip its fault switches (NAK, slow, dropped connection, garbage,
truncated or mislabelled answers) to see the adapter fail cleanly::

    with ReferenceHis() as his:
        host, port = his.mllp_address
        his.faults.set(delay=2.0, times=1)   # the next request is slow
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType

from hcm_his_reference.faults import Fault, FaultSwitch
from hcm_his_reference.hl7_front import Hl7Front
from hcm_his_reference.mllp import MllpServer
from hcm_his_reference.store import HisFaultError, Store

__all__ = ["Fault", "FaultSwitch", "HisFaultError", "ReferenceHis", "Store"]


class ReferenceHis:
    """The reference HIS: one store, an MLLP listener and a FHIR R4 HTTP server."""

    def __init__(
        self,
        store: Path | str = ":memory:",
        *,
        hospital_code: str = "H0001",
        host: str = "127.0.0.1",
        mllp_port: int = 0,
        fhir_port: int = 0,
        validation_cache: bool = True,
    ) -> None:
        self.store = Store(store, hospital_code=hospital_code)
        self.faults = FaultSwitch()
        # validation_cache=False: hl7apy's full strict parse of every message, as before
        # the structure cache (the benchmark's "before")
        self.hl7 = Hl7Front(self.store, validation_cache=validation_cache)
        self._mllp = MllpServer(self.hl7.handle, self.faults, host, mllp_port)
        from hcm_his_reference.fhir_front import FhirServer

        self._fhir = FhirServer(self.store, self.faults, host, fhir_port)
        self._started = False

    @property
    def mllp_address(self) -> tuple[str, int]:
        """``(host, port)`` of the MLLP listener."""
        return self._mllp.address

    @property
    def fhir_url(self) -> str:
        """The FHIR base URL, e.g. ``http://127.0.0.1:8080/fhir``."""
        return self._fhir.base_url

    def start(self) -> ReferenceHis:
        """Start both listeners."""
        self._mllp.start()
        self._fhir.start()
        self._started = True
        return self

    def stop(self) -> None:
        """Stop both listeners and close the store (once)."""
        if self._started:
            self._started = False
            self._mllp.stop()
            self._fhir.stop()
            self.store.close()

    def __enter__(self) -> ReferenceHis:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
