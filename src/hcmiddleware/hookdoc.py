"""The hook reference (``docs/hooks.md``), rendered from ``hookspecs.py`` itself.

``hcm plugins hooks`` prints it; a test keeps the committed file identical to it, so
the documentation cannot drift from the code.

The docstrings are written for Python readers (reST: ``literals``, ``:class:`` roles,
``:param:`` fields, an ``Example::`` literal block); the reference is plain Markdown, so
the renderer turns literals and roles into code spans, the fields into a parameter list
and the example into a ``python`` code block. Each hook's signature is shown as a stub
``def`` with the spec's annotations, so every ``python`` block of the reference is Python.
"""

from __future__ import annotations

import inspect
import re
import textwrap
from dataclasses import dataclass, field

from hcmiddleware import hookspecs
from hcmiddleware.registry import hook_names

__all__ = ["hook_signature", "render_hooks_markdown", "to_markdown"]

#: ``:class:`~a.b.C``` and the other Sphinx roles; ``~`` keeps the last name only.
_ROLE = re.compile(r":(?:py:)?[a-z]+:`(~?)([^`<]+?)`")
#: A reST literal, ````text````.
_LITERAL = re.compile(r"``(.+?)``")
_FIELD = re.compile(r"^:(param (\w+)|returns?):\s*(.*)$")
_EXAMPLE = "Example::"


def hook_signature(name: str) -> str:
    """``name(arg: Type, …) -> Return`` exactly as declared."""
    sig = inspect.signature(getattr(hookspecs, name))
    params = ", ".join(f"{p.name}: {p.annotation}" for p in sig.parameters.values())
    return f"{name}({params}) -> {sig.return_annotation}"


def to_markdown(text: str) -> str:
    """Inline reST as Markdown: ````x```` → `` `x` ``, ``:class:`~a.b.C``` → `` `C` ``."""

    def role(match: re.Match[str]) -> str:
        short, target = match.groups()
        return f"`{target.rsplit('.', 1)[-1] if short else target}`"

    return _LITERAL.sub(r"`\1`", _ROLE.sub(role, text))


@dataclass
class _Doc:
    prose: list[str] = field(default_factory=list)
    params: list[tuple[str, list[str]]] = field(default_factory=list)
    returns: list[str] = field(default_factory=list)
    example: list[str] = field(default_factory=list)


def _parse(doc: str) -> _Doc:
    """Split a hook docstring into prose, ``:param:`` fields, ``:return:`` and the example."""
    out = _Doc()
    lines = doc.splitlines()
    current: list[str] | None = None  # the field being continued
    i = 0
    while i < len(lines):
        line = lines[i]
        match = _FIELD.match(line)
        if line.strip() == _EXAMPLE:
            block = []
            i += 1
            while i < len(lines) and (not lines[i].strip() or lines[i].startswith(" ")):
                block.append(lines[i])
                i += 1
            out.example = textwrap.dedent("\n".join(block)).strip("\n").splitlines()
            current = None
            continue
        if match:
            current = [match.group(3)]
            if match.group(2):
                out.params.append((match.group(2), current))
            else:
                out.returns = current
        elif current is not None and line.startswith(" ") and line.strip():
            current.append(line.strip())
        else:
            current = None
            out.prose.append(line)
        i += 1
    return out


def _render_hook(doc: str) -> list[str]:
    parsed = _parse(doc)
    parts = [to_markdown("\n".join(parsed.prose).strip()), ""]
    if parsed.params:
        parts += ["**Parameters**", ""]
        parts += [f"- `{name}`: {to_markdown(' '.join(text))}" for name, text in parsed.params]
        parts.append("")
    if parsed.returns:
        parts += [f"**Returns**: {to_markdown(' '.join(parsed.returns))}", ""]
    if parsed.example:
        parts += ["**Example**", "", "```python", *parsed.example, "```", ""]
    return parts


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
        to_markdown(head),
        "",
    ]
    for name in hook_names():
        doc = inspect.getdoc(getattr(hookspecs, name)) or ""
        parts += [
            f"## `{name}`",
            "",
            "```python",
            f"def {hook_signature(name)}: ...",
            "```",
            "",
            f"*{_kind(name)}*",
            "",
            *_render_hook(doc),
        ]
    return "\n".join(parts).rstrip() + "\n"
