"""``hcm agent serve``: the SDK over HTTP for browser-based and non-Python HIS."""

from __future__ import annotations

import click

from hcmiddleware._optional import needs_extra
from hcmiddleware.cli.context import CliState
from hcmiddleware.config import AgentSection, config_error_from_validation
from hcmiddleware.errors import ConfigError

__all__ = ["agent", "agent_token_section"]


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
        from hcmiddleware.agent.server import listen
        from hcmiddleware.agent.server import serve as run

    from hcmiddleware.runtime import Middleware

    # the port first: one taken is said before the database, the SAM or a reader is opened
    sock = listen(settings.host, settings.port)
    try:
        mw = Middleware(config)
    except BaseException:
        sock.close()
        raise
    click.echo(f"hcm agent on http://{settings.host}:{settings.port} (console: /console)", err=True)
    run(mw, settings, ready=f"listening on {settings.host}:{settings.port}", sock=sock)


@agent.command("token")
@click.argument("workstation")
@click.option("--role", default="registration", show_default=True, help="the role its calls act in")
@click.option("--user", default=None, help="the user's opaque ID (default: WORKSTATION)")
@click.option("--terminal", default=None, help="its terminal ID (default: WORKSTATION)")
def token(workstation: str, role: str, user: str | None, terminal: str | None) -> None:
    """Make a new token for WORKSTATION: shown once, with the section to put in hcm.toml.

    Only the token's SHA-256 goes into the config (token_sha256); the token itself is
    given to the HIS on that workstation and kept nowhere else. For a workstation that
    has a section already, replace its token_sha256 (rotation). The agent reads its
    tokens when it starts: restart it after the change.
    """
    import re

    from pydantic import ValidationError

    from hcmiddleware.config import AGENT_NAME, new_agent_token

    if not re.fullmatch(AGENT_NAME, workstation):
        raise click.BadParameter(
            "1 to 64 letters, digits and _.:- (it names a TOML table)", param_hint="WORKSTATION"
        )
    made, digest = new_agent_token()
    try:
        AgentSection.model_validate(
            {"tokens": {workstation: {"token_sha256": digest, "user": user or workstation,
             "role": role, "terminal": terminal or workstation}}}
        )  # fmt: skip
    except ValidationError as exc:
        raise config_error_from_validation(
            exc, file=None, model=AgentSection, prefix=("agent",)
        ) from None
    click.echo(f"token for {workstation} (shown once; give it to the HIS on that workstation):")
    click.echo(f"  {made}")
    click.echo("")
    click.echo("put this in hcm.toml (or replace the workstation's token_sha256), then")
    click.echo("restart the agent:")
    click.echo("")
    click.echo(agent_token_section(workstation, digest, user or workstation, role,
                                   terminal or workstation))  # fmt: skip


def agent_token_section(workstation: str, digest: str, user: str, role: str, terminal: str) -> str:
    """The ``[agent.tokens.<workstation>]`` section holding a token's SHA-256."""
    return (
        f"[agent.tokens.{workstation}]\n"
        f'token_sha256 = "{digest}"\n'
        f'user = "{user}"\n'
        f'role = "{role}"\n'
        f'terminal = "{terminal}"\n'
    )
