"""The reference e-card platform (loopback, for tests and the demo)."""

from hcm_ehc_platform.reference.platform import App, ReferencePlatform

__all__ = ["App", "ReferencePlatform"]
