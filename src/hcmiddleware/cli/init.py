"""``hcm init [DIR]``: a new installation's starter config, data folder and keys."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from hcmiddleware.cli.agent import agent_token_section
from hcmiddleware.config import load_config, new_agent_token
from hcmiddleware.errors import ConfigError
from hcmiddleware.keyfiles import (
    AUDIT_FILE,
    AUDIT_PUBLIC_FILE,
    audit_key_section,
    write_audit_key,
    write_empi_keys,
)

__all__ = ["init"]

CONFIG_NAME = "hcm.toml"
#: the workstation whose agent token a new installation comes with
AGENT_WORKSTATION = "workstation-1"

STARTER = """\
# hcmiddleware configuration, written by 'hcm init'. Every relative path in this file
# is taken from this file's folder. Reference: docs/configuration.md

[middleware]
site_name = {site_name}
# the 12-character institution code used in insurance message IDs
institution_code = "000000000000"
data_dir = "data"

# [database]
# url = "postgresql+psycopg://hcm@db.example/hcm"   # default: SQLite in data_dir

# [readers]
# user = "..."        # the reader the patient's card goes in ('hcm card readers')
# sam = "..."         # the SAM slot

# [sam]
# keys = "..."        # a software SAM's key set, for tests and demos only
# pin = {{ env = "HCM_SAM_PIN" }}

# The resident index's keys. Back the keys folder up apart from the database: without
# these files the index cannot be read, and new keys cannot read old data.
[empi]
master_keys = {{ {key_id} = {{ file = "{master}" }} }}
current_key = "{key_id}"
index_key = {{ file = "{index}" }}

# The audit log's checkpoint key (Ed25519; its public half is beside it, .pub).
# Point checkpoint_file at another disk: a rewrite of the database is caught against it.
[audit]
hash = "sha256"                 # or "sm3"; fixed once the first entry is written
signing_key = {{ file = "{audit_key}" }}
# checkpoint_file = "/mnt/audit/hcm-checkpoints.jsonl"

# The local agent, 'hcm agent serve' (docs/agent.md): one workstation's token to start
# with. Only its SHA-256 is kept here; 'hcm init' showed the token once. Set the user,
# role and terminal of that workstation; add more with 'hcm agent token NAME'.
{agent_tokens}
[logging]
level = "WARNING"

[plugins]
enabled = []
"""


@click.command("init")
@click.argument("directory", required=False, default=".", type=click.Path(file_okay=False))
@click.option("--site-name", default="hcmiddleware site", help="the site's name in reports")
def init(directory: str, site_name: str) -> None:
    """Write a starter config, a data folder, resident-index keys, an audit key and a
    token for the local agent.

    DIRECTORY (default: the current one) gets hcm.toml, data/ and keys/ (mode 700; each
    key file mode 600, the audit key's public half 644). The agent token of
    workstation-1 is shown once; hcm.toml keeps only its SHA-256. Nothing already there
    is overwritten: an existing config or key refuses the command.
    """
    folder = Path(directory).expanduser().absolute()
    config_file = folder / CONFIG_NAME
    if config_file.exists():
        raise ConfigError(
            "this folder already holds a configuration",
            file=str(config_file),
            hint="edit it, or run 'hcm init' on another folder; nothing was changed",
        )
    folder.mkdir(parents=True, exist_ok=True)
    audit_files = [folder / "keys" / name for name in (AUDIT_FILE, AUDIT_PUBLIC_FILE)]
    try:
        # the audit key is checked first and written last: either both or nothing
        existing = next((path for path in audit_files if path.exists()), None)
        keys = write_empi_keys(folder / "keys", before=existing)
    except FileExistsError as exc:
        what = "an audit signing key" if Path(str(exc)) in audit_files else "a resident-index key"
        raise ConfigError(
            f"{what} is already there and may protect data",
            file=str(exc),
            hint="name it in the config by hand, or use another folder; nothing was changed",
        ) from None
    audit_key = write_audit_key(folder / "keys")
    data = folder / "data"
    data.mkdir(mode=0o700, exist_ok=True)
    section = keys.section(relative_to=folder)
    agent_token, digest = new_agent_token()
    text = STARTER.format(
        agent_tokens=agent_token_section(
            AGENT_WORKSTATION, digest, "operator-1", "registration", AGENT_WORKSTATION
        ),
        site_name=json.dumps(site_name, ensure_ascii=False),  # a valid TOML string
        key_id=keys.key_id,
        master=section["master_keys"][keys.key_id]["file"],
        index=section["index_key"]["file"],
        audit_key=audit_key_section(audit_key, relative_to=folder)["signing_key"]["file"],
    )
    fd = os.open(config_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    load_config(config_file)  # what was written must load
    click.echo(f"wrote {config_file}")
    click.echo(f"wrote {keys.master} and {keys.index} (mode 600)")
    click.echo(f"wrote {audit_key} (mode 600) and its public key {audit_key.with_suffix('.pub')}")
    click.echo(f"made {data} for the database")
    click.echo(
        f"agent token of {AGENT_WORKSTATION} (shown once; give it to the HIS on that "
        f"workstation, hcm.toml keeps only its SHA-256): {agent_token}"
    )
    click.echo("back up the keys folder apart from the database: without it the index is lost")
    click.echo(
        f"next: set site_name and institution_code, then HCM_CONFIG={config_file} hcm doctor"
    )
