"""The ``visret serve`` command: open the index, print the address, serve until Ctrl-C."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Annotated, Optional

import typer

from visret.console import err, memory_size, shown
from visret.errors import VisretError


def register(app: typer.Typer) -> None:
    @app.command("serve")
    def serve_command(
        index: Annotated[Optional[Path], typer.Option("--index", help="Index directory [default: $VISRET_INDEX or indexes/default].")] = None,
        host: Annotated[str, typer.Option(help="Address to listen on; another than 127.0.0.1 opens the index to the network.")] = "127.0.0.1",
        port: Annotated[int, typer.Option(min=0, max=65535, help="Port (0: any free one).")] = 8000,
        max_upload: Annotated[str, typer.Option(help="Largest query image accepted.")] = "20M",
        max_pixels: Annotated[Optional[int], typer.Option(min=1, help="Refuse uploads with more pixels (decompression bombs).")] = None,
    ) -> None:
        """Search and browse an index in a web browser, with a JSON API (read-only)."""
        try:
            import uvicorn

            from visret.serve.app import create_app
        except ImportError as exc:
            raise VisretError(f"visret serve needs the serve extra ({exc.name} is missing): pip install 'visret[serve]'") from None
        from visret.images import DEFAULT_MAX_PIXELS
        from visret.index import default_index_path

        path = index or default_index_path()
        web = create_app(path, memory_size(max_upload), max_pixels or DEFAULT_MAX_PIXELS)
        listening = socket.create_server((host, port))  # bound here: a busy port is one line, port 0 a real one
        config = uvicorn.Config(web, log_level="warning", access_log=False)
        address = f"http://{host}:{listening.getsockname()[1]}/"
        err.print(f"serving {shown(path)} ({len(web.state.live.current())} images) at {address}  (API docs: {address}docs; Ctrl-C to stop)", soft_wrap=True)
        uvicorn.Server(config).run(sockets=[listening])
