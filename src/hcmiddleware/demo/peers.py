"""What ``hcm demo`` starts around the middleware, and stops again whatever happens.

* **The terminal**: where pcscd, the vpcd driver and pyscard are installed, a pcscd
  with two virtual readers (``hcmiddleware.testing.pcscd``), the emulated health card
  in the first and the emulated SAM card in the second — the PC/SC path of a real
  kiosk. Otherwise the card and the SAM in-process, and the demo says so.
* **Peers of installed adapters**: every package with an ``hcmiddleware.demo`` entry
  point starts its reference peer on loopback (the reference bank, insurer, HIS and
  e-card platform) and names the plugin to enable with its settings. The core never
  imports an adapter.
* **The ward's broker**: the ward-mqtt plugin's peer uses the MQTT broker when one
  answers (``--broker``, default 127.0.0.1:1883); without one, band events go to the
  ward in-process, and the demo says so.

A peer entry point is ``start_demo_peer(folder, cardholder) -> dict | None``; the dict
holds ``plugin`` (its name), ``settings`` (its ``[plugins.<name>]`` table), ``stop``
(a callable), optionally ``sections`` (config sections it needs, e.g. ``[ehc]``
keys), ``provides`` (objects the demo uses as the hospital's staff or devices, by
name) and ``note`` (one line: what it started). ``None``: nothing to start here.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import shutil
from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from importlib.resources import files
from pathlib import Path
from typing import Any

from hcmiddleware.card.emulator import EmulatedCard
from hcmiddleware.errors import HcmError
from hcmiddleware.sam.samples import TEST_ISSUER_KEYS

__all__ = [
    "DEMO_PEER_GROUP",
    "SAMPLE_PROFILE",
    "Peers",
    "Terminal",
    "start_peers",
    "start_terminal",
]

log = logging.getLogger("hcmiddleware.demo")

DEMO_PEER_GROUP = "hcmiddleware.demo"
SAMPLE_PROFILE = Path(str(files("hcmiddleware.card.samples"))) / "resident-profile.json"


@dataclass
class Terminal:
    """The demo kiosk's card reader: through pcscd, or in-process."""

    card: EmulatedCard
    pcsc: bool
    note: str
    reader: str | None = None
    sam_reader: str | None = None

    def readers_section(self) -> dict[str, Any]:
        """``[readers]`` for the config."""
        if not self.pcsc:
            return {}
        return {"user": self.reader, "sam": self.sam_reader}

    def transport(self) -> Any:
        """A connection to the card: a PC/SC one, or the in-process card itself."""
        if not self.pcsc:
            return self.card
        from hcmiddleware.card.pcsc import PcscTransport

        return PcscTransport(self.reader)


@dataclass
class Peers:
    """The peers started, their plugins' settings and what they provide."""

    plugins: dict[str, dict[str, Any]] = field(default_factory=dict)
    sections: dict[str, Any] = field(default_factory=dict)
    provides: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _pcsc_missing() -> str | None:
    """Why the PC/SC path cannot run here, or None."""
    from hcmiddleware.testing.pcscd import VPCD_DRIVER

    if shutil.which("pcscd") is None and not Path("/usr/sbin/pcscd").exists():
        return "pcscd is not installed"
    if not VPCD_DRIVER.exists():
        return "the vpcd driver is not installed (vsmartcard-vpcd)"
    if importlib.util.find_spec("smartcard") is None:
        return "pyscard is not installed (the 'pcsc' extra)"
    return None


def start_terminal(stack: ExitStack, *, pcsc: bool = True) -> Terminal:
    """The sample card (and SAM) behind pcscd + vpcd, or in-process when that cannot run."""
    card = EmulatedCard.from_files(SAMPLE_PROFILE, TEST_ISSUER_KEYS)
    missing = "turned off (--no-pcsc)" if not pcsc else _pcsc_missing()
    advice = "install pcscd, vsmartcard-vpcd and hcmiddleware[pcsc] for the PC/SC path"
    if missing is None:
        try:
            return _pcsc_terminal(stack, card)
        except HcmError as exc:
            missing = f"the PC/SC path could not be used ({exc.message})"
            advice = exc.hint or "see 'hcm doctor'"
    if not pcsc:
        advice = "without --no-pcsc the card is read through pcscd where it is installed"
    return Terminal(card=card, pcsc=False, note=f"card and SAM in-process: {missing}; {advice}")


def _pcsc_terminal(stack: ExitStack, card: EmulatedCard) -> Terminal:
    from hcmiddleware.card.vpcd import VpcdCard
    from hcmiddleware.sam.emulated import EmulatedSam
    from hcmiddleware.sam.keyset import load_keyset
    from hcmiddleware.testing.pcscd import SAM_READER, USER_READER, Pcscd

    daemon = stack.enter_context(Pcscd())
    if Pcscd.card_present(USER_READER) or Pcscd.card_present(SAM_READER):
        raise HcmError(
            "the virtual readers already hold cards",
            hint="another emulator ('hcm card emulate', a test) is serving them: stop it",
        )
    stack.enter_context(VpcdCard(card, daemon.user_port))
    stack.enter_context(VpcdCard(EmulatedSam(load_keyset(TEST_ISSUER_KEYS)), daemon.sam_port))
    daemon.wait_card(True, USER_READER)
    daemon.wait_card(True, SAM_READER)
    how = "a pcscd of its own" if daemon.started else "the running pcscd"
    return Terminal(
        card=card,
        pcsc=True,
        note=f"card and SAM card behind {how} with vpcd (readers '{USER_READER}', '{SAM_READER}')",
        reader=USER_READER,
        sam_reader=SAM_READER,
    )


def start_peers(stack: ExitStack, folder: Path, *, broker: str | None) -> Peers:
    """Start the peers installed adapters offer (entry point ``hcmiddleware.demo``)."""
    cardholder: Mapping[str, str] = json.loads(SAMPLE_PROFILE.read_text(encoding="utf-8"))["items"]
    context = dict(cardholder)
    if broker:
        context["demo_broker"] = broker
    peers = Peers()
    for ep in sorted(entry_points(group=DEMO_PEER_GROUP), key=lambda e: e.name):
        started = ep.load()(folder, context)
        if started is None:
            continue
        if "plugin" not in started:  # nothing started; only a word on why
            peers.notes.append(f"{ep.name}: {started.get('note', 'not started')}")
            continue
        stack.callback(started["stop"])
        name = str(started["plugin"])
        peers.plugins[name] = dict(started["settings"])
        for section, values in dict(started.get("sections", {})).items():
            peers.sections.setdefault(section, {}).update(values)
        peers.provides.update(dict(started.get("provides", {})))
        if started.get("note"):
            peers.notes.append(f"{name}: {started['note']}")
    return peers
