"""The stand-in hospital the examples share, so each example is only about its task.

A real installation has a TOML config file, keys made by ``hcm init``, the hospital's
own HIS and a card in a PC/SC reader. Here, for each run:

* a fresh temporary folder holds the middleware's data and new resident-index keys;
* the reference HIS (HL7 v2.5 over MLLP on loopback) stands in for the hospital's HIS;
* the sample health card is the software card, read in-process.
``with site() as s:`` gives ``s.mw`` (a started Middleware), ``s.his`` and ``s.card``.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

from hcm_his_reference import ReferenceHis

from hcmiddleware import Middleware
from hcmiddleware.card.emulator import EmulatedCard
from hcmiddleware.config import parse_config
from hcmiddleware.sam.samples import TEST_ISSUER_KEYS
from hcmiddleware.testing import empi_keys

HOSPITAL = "210100000001"  # this hospital's institution code
SAMPLE_CARD = Path(str(files("hcmiddleware.card.samples"))) / "resident-profile.json"


@dataclass
class Site:
    mw: Middleware  # started; closed when the ``with`` block ends
    his: ReferenceHis | None  # None when the example brings its own HIS adapter
    card: EmulatedCard  # the card "in the reader"
    folder: Path  # the run's scratch folder


@contextmanager
def site(
    *,
    reference_his: bool = True,
    enabled: tuple[str, ...] = (),
    settings: dict[str, dict[str, Any]] | None = None,
    sections: Callable[[Path], dict[str, Any]] | None = None,
    plugins: dict[str, object] | None = None,
) -> Iterator[Site]:
    """A started Middleware for one run. ``enabled`` and ``settings``: more plugins (by
    entry-point name) and their ``[plugins.<name>]`` tables; ``sections``: more config
    sections made in the run's folder (``ehc`` keys …); ``plugins``: plugin objects to
    register directly (their names need not be in ``enabled``)."""
    folder = Path(tempfile.mkdtemp(prefix="hcm-example-"))
    table: dict[str, Any] = dict(settings or {})
    names = list(enabled)
    with ExitStack() as stack:
        his = None
        if reference_his:
            his = stack.enter_context(ReferenceHis(folder / "his.db", hospital_code=HOSPITAL))
            host, port = his.mllp_address
            names.insert(0, "his-hl7")
            table["his-hl7"] = {"host": host, "port": port}
        config = parse_config(
            {
                "middleware": {
                    "data_dir": str(folder / "data"),
                    "institution_code": HOSPITAL,
                    "site_name": "Example hospital",
                },
                "sam": {"keys": str(TEST_ISSUER_KEYS)},  # the software SAM's test keys
                "empi": empi_keys(folder / "keys"),  # `hcm init` makes a site's own
                "plugins": {"enabled": names, **table},
                **(sections(folder) if sections else {}),
            }
        )
        card = EmulatedCard.from_files(SAMPLE_CARD, TEST_ISSUER_KEYS)
        mw = stack.enter_context(Middleware(config, plugins=plugins or {}))
        yield Site(mw=mw, his=his, card=card, folder=folder)
