"""The FAISS index backend, registered through the same hook as third-party backends. The backend itself
(``visret.default_plugins._faiss``) is imported when backends are asked for, so commands that search no
index (``visret --help``, ``visret plugins``) never load FAISS."""

from __future__ import annotations

from visret.plugins.hookspecs import hookimpl


@hookimpl
def register_index_backends(register):
    from visret.default_plugins._faiss import FaissBackend

    register(FaissBackend)
