"""The local agent: the typed services over HTTP (``hcm agent serve``, docs/agent.md).

Needs the ``agent`` extra (FastAPI, uvicorn). :func:`~hcmiddleware.agent.app.create_app`
builds the application on a started Middleware; :func:`~hcmiddleware.agent.server.serve`
runs it until SIGTERM. Every call acts as the :class:`~hcmiddleware.Caller` its
workstation token names, through ``mw.acting_as``.
"""

from __future__ import annotations

from hcmiddleware.agent.app import create_app
from hcmiddleware.agent.server import serve

__all__ = ["create_app", "serve"]
