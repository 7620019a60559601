"""Shared fixtures of the card tests: the sample profile, the test key set, a card, a SAM."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from card_samples import KEYS, PROFILE, SAMPLES

from hcmiddleware.card.emulator import EmulatedCard
from hcmiddleware.card.guard import PROCESS_GUARD
from hcmiddleware.card.session import CardSession
from hcmiddleware.sam.software import SoftwareSam


@pytest.fixture
def profile() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(PROFILE.read_text(encoding="utf-8"))
    return data


@pytest.fixture
def card(profile: dict[str, Any]) -> EmulatedCard:
    return EmulatedCard(profile, KEYS, base_dir=SAMPLES)


@pytest.fixture
def sam() -> SoftwareSam:
    return SoftwareSam.from_file(KEYS)


@pytest.fixture
def session(card: EmulatedCard, sam: SoftwareSam) -> CardSession:
    return CardSession(card, sam)


@pytest.fixture(autouse=True)
def _fresh_process_guard() -> Iterator[None]:
    """Every test starts with a process guard that holds no card back."""
    PROCESS_GUARD.clear()
    yield
    PROCESS_GUARD.clear()
