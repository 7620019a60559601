"""The flows against the reference HIS on loopback, over real MLLP and over FHIR.

Every flow test runs twice: once with the HL7 v2.5 adapter talking MLLP to the
reference HIS, once with the FHIR R4 adapter talking HTTP to it. The card is the
sample card in the software emulator, in-process; ``test_pcsc_journey`` takes it
through pcscd + vpcd.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from decimal import Decimal
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest
from hcm_his_reference import ReferenceHis

from hcmiddleware import Middleware
from hcmiddleware.card.emulator import EmulatedCard
from hcmiddleware.models import Charge
from hcmiddleware.sam.samples import TEST_ISSUER_KEYS

HOSPITAL = "210100000001"
PROFILE = Path(str(files("hcmiddleware.card.samples"))) / "resident-profile.json"


class Till:
    """The payment seam as the flows see it: records each payment, returns its ID.

    It stands where the journal's payment flow plugs in (another part of the SDK);
    ``fail`` makes the next payment raise as a refused bank payment would.
    """

    def __init__(self) -> None:
        self.payments: list[tuple[Decimal, list[str]]] = []
        self.fail: Exception | None = None

    def __call__(self, amount: Decimal, charges: list[Charge]) -> str:
        if self.fail is not None:
            exc, self.fail = self.fail, None
            raise exc
        self.payments.append((amount, [c.charge_id for c in charges]))
        return f"T-{len(self.payments):04d}"


def his_plugin(
    protocol: str, his: ReferenceHis, **overrides: Any
) -> tuple[str, object, dict[str, Any]]:
    """``(name, plugin, settings)`` of the adapter for ``protocol`` against ``his``."""
    common = {"timeout": 0.5, "attempts": 2, "backoff": 0.01, **overrides}
    if protocol == "hl7":
        from hcm_his_hl7 import Hl7His

        host, port = his.mllp_address
        return "his-hl7", Hl7His(), {"host": host, "port": port, **common}
    from hcm_his_fhir import FhirHis

    return "his-fhir", FhirHis(), {"base_url": his.fhir_url, **common}


def count(his: ReferenceHis, table: str) -> int:
    """Rows of a reference-HIS table (patient, visit, admission, deposit …)."""
    return len(his.store._all(f"SELECT * FROM {table}"))


@pytest.fixture
def reference_his(tmp_path: Path) -> Iterator[ReferenceHis]:
    """The reference HIS on loopback, with its own store."""
    with ReferenceHis(tmp_path / "his.db", hospital_code=HOSPITAL) as his:
        yield his


@pytest.fixture(params=["hl7", "fhir"])
def protocol(request: pytest.FixtureRequest) -> str:
    """The adapter under test."""
    return str(request.param)


MakeMw = Callable[..., Middleware]


@pytest.fixture
def make_mw(reference_his: ReferenceHis, hcm_make_middleware: Any, protocol: str) -> MakeMw:
    """A Middleware with the sample SAM keys and the adapter for ``protocol``.

    Two made with the same ``data_dir`` share the resident index, as two terminals of
    one hospital do.
    """

    def make(data_dir: Path | None = None, **overrides: Any) -> Middleware:
        name, plugin, settings = his_plugin(protocol, reference_his, **overrides)
        site: dict[str, Any] = {"institution_code": HOSPITAL, "site_name": "Test hospital"}
        if data_dir is not None:
            site["data_dir"] = str(data_dir)
        mw: Middleware = hcm_make_middleware(
            plugins={name: plugin},
            settings={name: settings},
            middleware=site,
            sam={"keys": str(TEST_ISSUER_KEYS)},
        )
        return mw

    return make


@pytest.fixture
def mw(make_mw: MakeMw) -> Middleware:
    """A started Middleware talking to the reference HIS."""
    return make_mw()


@pytest.fixture
def card() -> EmulatedCard:
    """The sample health card, in-process."""
    return EmulatedCard.from_files(PROFILE, TEST_ISSUER_KEYS)


@pytest.fixture
def till() -> Till:
    """The payment callable the flows are given."""
    return Till()
