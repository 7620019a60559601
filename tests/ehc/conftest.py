"""Fixtures: a Middleware trusting an issuer key of each algorithm, and its signer."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hcmiddleware import Middleware
from hcmiddleware.ehc.issuer import CodeIssuer
from hcmiddleware.ehc.keyfiles import key_paths
from hcmiddleware.models import Resident
from hcmiddleware.testing import ehc_keys

#: a resident of the tests: ID number 11010519491231002X (female), card H12345678
ID_NUMBER = "11010519491231002X"
CARD_NUMBER = "H12345678"

MakeMw = Callable[..., Middleware]


@pytest.fixture(params=["sm2", "ecdsa-p256", "ed25519"])
def algorithm(request: pytest.FixtureRequest) -> str:
    """Every signature algorithm a site may choose."""
    return str(request.param)


@pytest.fixture
def key_dir(tmp_path: Path) -> Path:
    """Where the issuer's key pairs are made."""
    return tmp_path / "ehc-keys"


@pytest.fixture
def make_mw(hcm_make_middleware: Any, key_dir: Path) -> MakeMw:
    """A Middleware trusting key ``TEST1`` of issuer ``TEST`` (and signing with it)."""

    def make(algorithm: str = "ed25519", **options: Any) -> Middleware:
        settings = {k: options.pop(k) for k in list(options) if k in {"key_id", "issuer"}}
        ehc = ehc_keys(key_dir, algorithm=algorithm, **settings)
        ehc.update(options.pop("ehc", {}))
        mw: Middleware = hcm_make_middleware(ehc=ehc, **options)
        return mw

    return make


@pytest.fixture
def mw(make_mw: MakeMw) -> Middleware:
    """A Middleware trusting an Ed25519 issuer key (the quickest to check)."""
    return make_mw("ed25519")


def signer(mw: Middleware) -> CodeIssuer:
    """The Middleware's own signer (``[ehc.issuer]``)."""
    issuer = mw.ehc.issuer
    assert issuer is not None
    return issuer


def other_signer(key_dir: Path, algorithm: str, key_id: str = "TEST1") -> CodeIssuer:
    """A signer with a key nobody trusts, claiming ``key_id`` (a forger)."""
    folder = key_dir / "forger"
    ehc_keys(folder, algorithm=algorithm, key_id=key_id)
    private, _public = key_paths(folder, key_id)
    return CodeIssuer.from_pem("TEST", key_id, algorithm, private.read_bytes())


def enrol(mw: Middleware) -> Resident:
    """The test resident, with an ID number and a physical card number."""
    return mw.residents.enrol(
        name="王芳", sex=2, id_number=ID_NUMBER, card_number=CARD_NUMBER, phone="13800138000"
    )
