"""Records every hook call made through a Middleware, for assertions in tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hcmiddleware.dispatch import CallRecord
from hcmiddleware.runtime import Middleware

__all__ = ["HookRecorder"]


class HookRecorder:
    """Attach to a Middleware; ``calls(name)`` lists what was called, with what."""

    def __init__(self, middleware: Middleware) -> None:
        self.records: list[CallRecord] = []
        self._detach: Callable[[], None] | None = middleware.dispatcher.add_observer(
            self.records.append
        )

    def detach(self) -> None:
        """Stop recording."""
        if self._detach is not None:
            self._detach()
            self._detach = None

    def calls(self, hook: str) -> list[CallRecord]:
        """Every recorded call of ``hook``, oldest first."""
        return [r for r in self.records if r.hook == hook]

    def last(self, hook: str) -> CallRecord:
        """The most recent call of ``hook``; AssertionError when there was none."""
        found = self.calls(hook)
        if not found:
            seen = sorted({r.hook for r in self.records})
            raise AssertionError(f"{hook} was not called; called: {', '.join(seen) or 'nothing'}")
        return found[-1]

    def assert_called(self, hook: str, **kwargs: Any) -> CallRecord:
        """Assert ``hook`` was called with (at least) these argument values."""
        for record in reversed(self.calls(hook)):
            if all(record.kwargs.get(k) == v for k, v in kwargs.items()):
                return record
        raise AssertionError(f"{hook} was not called with {kwargs!r}")

    def clear(self) -> None:
        """Forget what was recorded so far."""
        self.records.clear()
