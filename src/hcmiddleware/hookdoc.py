"""The hook reference (``docs/hooks.md``), rendered from ``hookspecs.py`` itself.

``hcm plugins hooks`` prints it; a test keeps the committed file identical to it, so
the documentation cannot drift from the code.
"""

from __future__ import annotations

import inspect

from hcmiddleware import hookspecs
from hcmiddleware.registry import hook_names

__all__ = ["hook_signature", "render_hooks_markdown"]


def hook_signature(name: str) -> str:
    """``name(arg: Type, …) -> Return`` exactly as declared."""
    sig = inspect.signature(getattr(hookspecs, name))
    params = ", ".join(f"{p.name}: {p.annotation}" for p in sig.parameters.values())
    return f"{name}({params}) -> {sig.return_annotation}"


def _kind(name: str) -> str:
    opts = getattr(getattr(hookspecs, name), "hcmiddleware_spec", {})
    if opts.get("firstresult"):
        return "firstresult — first non-None result wins"
    if opts.get("historic"):
        return "historic — also called for plugins registered later"
    return "every plugin is called"


def render_hooks_markdown() -> str:
    """The whole hook reference as Markdown."""
    head = inspect.getdoc(hookspecs) or ""
    parts = [
        "# Hook reference",
        "",
        "Generated from `src/hcmiddleware/hookspecs.py` by `hcm plugins hooks`; "
        "do not edit by hand.",
        "",
        head,
        "",
    ]
    for name in hook_names():
        doc = inspect.getdoc(getattr(hookspecs, name)) or ""
        parts += [
            f"## `{name}`",
            "",
            "```python",
            hook_signature(name),
            "```",
            "",
            f"*{_kind(name)}*",
            "",
            doc,
            "",
        ]
    return "\n".join(parts).rstrip() + "\n"
