"""hcmiddleware: the Resident Health Card middleware SDK a hospital system embeds."""

from __future__ import annotations

__version__ = "0.1.0"
