"""Typed calls of ``firstresult`` hooks, shared by the services on the Middleware.

A service asks one hook and expects one kind of answer. These helpers make the three
outcomes distinct: no enabled plugin implements the hook
(:class:`~hcmiddleware.errors.NoAdapterError`, naming the capability), the plugin
answered with something else than the hook returns
(:class:`~hcmiddleware.errors.PluginResultError`, naming the plugin), or the answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from hcmiddleware.errors import NoAdapterError, PluginResultError

if TYPE_CHECKING:
    from hcmiddleware.runtime import Middleware

__all__ = ["ask", "ask_many", "ask_one", "checked"]

T = TypeVar("T")


def ask(
    mw: Middleware, hook: str, *, capability: str, partial: tuple[str, ...] = (), **kwargs: Any
) -> tuple[str | None, Any]:
    """``(plugin, answer)`` of ``hook``; NoAdapterError when no enabled plugin implements it."""
    if not mw.dispatcher.implementers(hook):
        raise NoAdapterError(capability, hook, partial=partial)
    answered: tuple[str | None, Any] = mw.dispatcher.call_first(hook, **kwargs)
    return answered


def ask_one(
    mw: Middleware,
    hook: str,
    kind: type[T],
    *,
    capability: str,
    partial: tuple[str, ...] = (),
    **kwargs: Any,
) -> T:
    """The answer of ``hook``, which must be a ``kind``; no answer is a broken contract."""
    plugin, value = ask(mw, hook, capability=capability, partial=partial, **kwargs)
    if value is None:
        who = ", ".join(mw.dispatcher.implementers(hook))
        raise PluginResultError(
            f"{hook} got no answer from {who}: the adapter must return a {kind.__name__} or raise",
            plugin=who,
            hook=hook,
        )
    return checked(hook, plugin, value, kind)


def ask_many(
    mw: Middleware,
    hook: str,
    kind: type[T],
    *,
    capability: str,
    partial: tuple[str, ...] = (),
    **kwargs: Any,
) -> list[T]:
    """The list ``hook`` answers (empty for no answer); every item must be a ``kind``."""
    plugin, value = ask(mw, hook, capability=capability, partial=partial, **kwargs)
    if value is None:
        return []
    if not isinstance(value, Sequence) or isinstance(value, str | bytes):
        raise _wrong(hook, plugin, value, f"a list of {kind.__name__}")
    return [checked(hook, plugin, item, kind) for item in value]


def checked(hook: str, plugin: str | None, value: object, kind: type[T]) -> T:
    """``value`` if it is a ``kind``; else PluginResultError naming ``plugin``."""
    if not isinstance(value, kind):
        raise _wrong(hook, plugin, value, kind.__name__)
    return value


def _wrong(hook: str, plugin: str | None, value: object, expected: str) -> PluginResultError:
    return PluginResultError(
        f"plugin {plugin!r} answered {hook} with {type(value).__name__} where the hook "
        f"returns {expected}",
        plugin=plugin or "?",
        hook=hook,
    )
