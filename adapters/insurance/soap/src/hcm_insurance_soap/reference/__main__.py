"""``python -m hcm_insurance_soap.reference``: run the reference insurer until interrupted."""

from __future__ import annotations

import argparse
import threading
import tomllib
from pathlib import Path

from hcm_insurance_soap.reference import MONEY_OPERATIONS, FaultPlan, serve


def main() -> None:
    """Parse the command line and serve until Ctrl-C."""
    parser = argparse.ArgumentParser(description="reference insurer SOAP server (loopback)")
    parser.add_argument("--ledger", type=Path, default=Path("reference-bank.db"))
    parser.add_argument("--port", type=int, default=8092)
    parser.add_argument("--faults", type=Path, help="TOML file with a [faults] table")
    parser.add_argument("--username")
    parser.add_argument("--password")
    args = parser.parse_args()
    plan = FaultPlan(operations=MONEY_OPERATIONS | {"ReconcileDetail"})
    if args.faults:
        table = tomllib.loads(args.faults.read_text(encoding="utf-8")).get("faults", {})
        plan = FaultPlan(**{"operations": MONEY_OPERATIONS | {"ReconcileDetail"}, **table})
    server = serve(
        args.ledger, port=args.port, faults=plan, username=args.username, password=args.password
    )
    print(f"reference insurer at {server.url} (WSDL {server.wsdl_url})", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
