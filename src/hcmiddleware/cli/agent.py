"""``hcm agent serve``: the SDK over HTTP for browser-based and non-Python HIS."""

from __future__ import annotations

import click

from hcmiddleware._optional import needs_extra
from hcmiddleware.cli.context import CliState
from hcmiddleware.config import AgentSection, config_error_from_validation
from hcmiddleware.errors import ConfigError

__all__ = ["agent"]


@click.group("agent")
def agent() -> None:
    """The local HTTP agent (docs/agent.md)."""


@agent.command("serve")
@click.option("--host", default=None, help="address to listen on (default [agent] host, 127.0.0.1)")
@click.option(
    "--port", type=click.IntRange(1, 65535), default=None, help="port (default [agent] port, 8765)"
)
@click.pass_context
def serve(ctx: click.Context, host: str | None, port: int | None) -> None:
    """Serve the typed services over HTTP until SIGTERM; loopback by default."""
    from pydantic import ValidationError

    state = ctx.find_object(CliState) or CliState()
    config = state.load()
    settings = config.agent
    if host is not None or port is not None:
        data = settings.model_dump()
        data["tokens"] = settings.tokens  # secrets stay resolved
        data.update({k: v for k, v in (("host", host), ("port", port)) if v is not None})
        try:
            settings = AgentSection.model_validate(data)
        except ValidationError as exc:
            raise config_error_from_validation(
                exc, file=str(config.source) if config.source else None, model=AgentSection,
                prefix=("agent",),
            ) from None  # fmt: skip
    if not settings.tokens:
        raise ConfigError(
            "no workstation tokens: nobody could call the agent",
            file=str(config.source) if config.source else None,
            key="agent.tokens",
            hint="add an [agent.tokens.<workstation>] section per workstation (docs/agent.md)",
        )
    with needs_extra("hcm agent serve"):
        from hcmiddleware.agent.server import serve as run

    from hcmiddleware.runtime import Middleware

    mw = Middleware(config)
    click.echo(f"hcm agent on http://{settings.host}:{settings.port} (console: /console)", err=True)
    run(mw, settings, ready=f"listening on {settings.host}:{settings.port}")
