"""The local agent: the typed services over HTTP (``hcm agent serve``, docs/agent.md).

Needs the ``agent`` extra (FastAPI, uvicorn). :func:`~hcmiddleware.agent.app.create_app`
builds the application on a started Middleware; :func:`~hcmiddleware.agent.server.serve`
runs it until SIGTERM.
"""

from __future__ import annotations

from hcmiddleware.agent.app import create_app
from hcmiddleware.agent.callers import Caller
from hcmiddleware.agent.server import serve

__all__ = ["Caller", "create_app", "serve"]
