"""A sample live photo for the demo and the examples.

``kiosk-live.jpg`` is the cardholder of the sample card as a kiosk camera would see
her: a brightened head-and-shoulders cut of the public-domain NASA portrait of
astronaut Eileen Collins (as shipped in scikit-image, ``skimage.data.astronaut()``),
the same photo the sample card's EF07 photo was made from.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

__all__ = ["KIOSK_LIVE_PHOTO"]

KIOSK_LIVE_PHOTO = Path(str(files("hcmiddleware.face.samples"))) / "kiosk-live.jpg"
