"""Test kit for integrators: fixtures, a hook recorder, and adapter conformance suites.

Installed as a pytest plugin (entry point ``pytest11``); it only adds fixtures, so it
changes nothing in a test run that does not ask for them:

* ``hcm_config`` — a :class:`~hcmiddleware.config.Config` on embedded defaults in a
  temporary folder;
* ``hcm_make_middleware`` — a factory: ``hcm_make_middleware(plugins=[...],
  enabled=[...], settings={...})`` returns a started Middleware, closed after the test;
* ``hcm_middleware`` — a started Middleware on embedded defaults;
* ``hcm_recorder`` — a :class:`HookRecorder` attached to ``hcm_middleware``.

The fixtures' configs carry resident-index keys made by :func:`empi_keys` and an audit
signing key made by :func:`audit_key` in the test's folder (the runtime itself never
makes keys); give ``empi=…`` or ``audit=…`` to use others. :func:`ehc_keys` makes an
e-card issuer's key pair and the ``[ehc]`` section trusting it
(``hcm_make_middleware(ehc=ehc_keys(folder))``).

Conformance suites (``hcmiddleware.testing.conformance``) are classes an adapter's own
test module subclasses; see ``docs/testing.md``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hcmiddleware.keyfiles import scratch_audit_key, scratch_empi_keys
from hcmiddleware.testing.recorder import HookRecorder

__all__ = ["HookRecorder", "audit_key", "ehc_keys", "empi_keys"]


def empi_keys(folder: Path) -> dict[str, Any]:
    """An ``[empi]`` section naming key files in ``folder``, made there on first call.

    For tests and demos: a second call with the same folder names the same keys, so a
    restarted Middleware reads what the first one wrote.
    """
    return scratch_empi_keys(folder)


def ehc_keys(folder: Path, **options: Any) -> dict[str, Any]:
    """An ``[ehc]`` section with an issuer key pair in ``folder``, made on first call.

    ``options``: ``key_id`` (``TEST1``), ``issuer`` (``TEST``), ``algorithm`` (``sm2``;
    needs the ``ehc`` extra), ``sign`` (also sign codes here, default true) and any
    ``[ehc]`` key. See :func:`hcmiddleware.ehc.keyfiles.ehc_section`.
    """
    from hcmiddleware.ehc.keyfiles import ehc_section

    return ehc_section(folder, **options)


def audit_key(folder: Path) -> dict[str, Any]:
    """An ``[audit]`` section naming a checkpoint signing key in ``folder``, made there on
    first call (for tests and demos, like :func:`empi_keys`)."""
    return scratch_audit_key(folder)
