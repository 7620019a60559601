"""Paths of the sample card profile and the test issuer key set."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

SAMPLES = Path(str(files("hcmiddleware.card.samples")))
PROFILE = SAMPLES / "resident-profile.json"
PHOTO = SAMPLES / "cardholder-photo.jpg"
KEYS = Path(str(files("hcmiddleware.sam.samples"))) / "test-issuer-keys.json"
KEYS_3DES = Path(str(files("hcmiddleware.sam.samples"))) / "test-issuer-keys-3des.json"
