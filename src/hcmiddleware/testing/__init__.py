"""Test kit for integrators: fixtures, a hook recorder, and adapter conformance suites.

Installed as a pytest plugin (entry point ``pytest11``); it only adds fixtures, so it
changes nothing in a test run that does not ask for them:

* ``hcm_config`` — a :class:`~hcmiddleware.config.Config` on embedded defaults in a
  temporary folder;
* ``hcm_make_middleware`` — a factory: ``hcm_make_middleware(plugins=[...],
  enabled=[...], settings={...})`` returns a started Middleware, closed after the test;
* ``hcm_middleware`` — a started Middleware on embedded defaults;
* ``hcm_recorder`` — a :class:`HookRecorder` attached to ``hcm_middleware``.

Conformance suites (``hcmiddleware.testing.conformance``) are classes an adapter's own
test module subclasses; see ``docs/testing.md``.
"""

from hcmiddleware.testing.recorder import HookRecorder

__all__ = ["HookRecorder"]
