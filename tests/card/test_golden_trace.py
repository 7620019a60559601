"""The APDUs of a full read of the sample card, against a golden log.

A change in what the session sends (an extra SELECT, a reordered read, another Le)
shows here as a diff of the command list. Regenerate after a deliberate change with
``python tests/card/test_golden_trace.py``.
"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

from hcmiddleware.card.emulator import EmulatedCard
from hcmiddleware.card.session import CardSession
from hcmiddleware.card.transport import TracingTransport, read_trace
from hcmiddleware.sam.software import SoftwareSam

sys.path.insert(0, str(Path(__file__).parent))
from card_samples import KEYS, PROFILE

GOLDEN = Path(__file__).parent / "golden" / "read_all.json"


def conversation() -> list[list[str]]:
    """[command (masked), status word] of every APDU of ``read_all`` on the sample card."""
    sink = io.StringIO()
    session = CardSession(
        TracingTransport(EmulatedCard.from_files(PROFILE, KEYS), sink), SoftwareSam.from_file(KEYS)
    )
    session.read_all()
    _, entries = read_trace(sink.getvalue().splitlines())
    out = []
    for e in entries:
        command = e["c"]
        if command[2:4] == "88":  # the terminal's random challenge
            command = command[:10] + "**" * 8 + command[26:]
        out.append([command, e["r"][-4:]])
    return out


def test_full_read_sends_the_golden_apdus() -> None:
    golden = json.loads(GOLDEN.read_text(encoding="utf-8"))
    assert conversation() == golden


if __name__ == "__main__":
    lines = ",\n".join(json.dumps(apdu) for apdu in conversation())
    GOLDEN.write_text(f"[\n{lines}\n]\n", encoding="utf-8")
    print(f"wrote {GOLDEN}")
