"""The ``visret serve`` command: open the index, print the address, serve until Ctrl-C."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Annotated, Optional

import typer

from visret.cli._options import IndexPath
from visret.cli.console import err, memory_size, shown
from visret.errors import VisretError


def register(app: typer.Typer) -> None:
    @app.command("serve")
    def serve_command(
        index: IndexPath = None,
        host: Annotated[str, typer.Option(help="Address to listen on; another than 127.0.0.1 opens the index to the network.")] = "127.0.0.1",
        port: Annotated[int, typer.Option(min=0, max=65535, help="Port (0: any free one).")] = 8000,
        max_upload: Annotated[str, typer.Option(help="Largest query image accepted.")] = "20M",
        max_pixels: Annotated[Optional[int], typer.Option(min=1, help="Refuse uploads with more pixels (decompression bombs).")] = None,
        workers: Annotated[int, typer.Option(min=1, help="Server processes: one answers on one core; more use more cores (and memory).")] = 1,
        allow_host: Annotated[Optional[list[str]], typer.Option("--allow-host", help="Another name requests may address the server by (Host header), e.g. photos.lan; repeatable.")] = None,
    ) -> None:
        """Search and browse an index in a web browser, with a JSON API (read-only)."""
        try:
            import uvicorn

            from visret.serve.app import create_app
        except ImportError as exc:
            raise VisretError(f"visret serve needs the serve extra ({exc.name} is missing): pip install 'visret[serve]'") from None
        from visret.images._decode import DEFAULT_MAX_PIXELS
        from visret.index._index import default_index_path

        path = index or default_index_path()
        limits = (memory_size(max_upload), max_pixels or DEFAULT_MAX_PIXELS)
        names = tuple(allow_host or ())
        web = create_app(path, *limits, host=host, allow_hosts=names)  # a bad index fails here, in one line
        listening = listen(host, port, shared=workers > 1)  # bound here: a busy port is one line, port 0 a real one
        shown_host = f"[{host}]" if ":" in host else host
        address = f"http://{shown_host}:{listening.getsockname()[1]}/"
        if host in ("0.0.0.0", "::"):
            err.print(f"warning: listening on every network interface ({host}): anyone who can reach this machine can search "
                      "and see every indexed image", soft_wrap=True)
        helpers = [_start_worker(path, limits, host, names, listening.getsockname()[1]) for _ in range(workers - 1)]
        processes = f" in {workers} processes" if workers > 1 else ""
        err.print(f"serving {shown(path)} ({len(web.state.live.current())} images) at {address}{processes}  "
                  f"(API docs: {address}docs; Ctrl-C to stop)", soft_wrap=True)
        try:
            stopping_server(uvicorn, web).run(sockets=[listening])
        finally:
            for helper in helpers:
                helper.terminate()


#: Seconds a stopping server gives requests in flight; it has ended within ``STOP_WITHIN_S`` of SIGTERM.
GRACE_S, STOP_WITHIN_S = 2, 4


def stopping_server(uvicorn, app):
    """A uvicorn server that stops within ``STOP_WITHIN_S`` of SIGTERM or Ctrl-C whatever is in flight: a
    client that stops sending, or work in a thread that cannot be cancelled, never holds it up."""
    import threading

    class Server(uvicorn.Server):
        def handle_exit(self, sig, frame) -> None:
            super().handle_exit(sig, frame)
            deadline = threading.Timer(STOP_WITHIN_S, os._exit, (0,))
            deadline.daemon = True
            deadline.start()

    return Server(uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=GRACE_S))


def listen(host: str, port: int, shared: bool = False) -> socket.socket:
    """A listening TCP socket. Made as a TCP socket by name so that asyncio turns Nagle's algorithm
    off on every connection (a keep-alive client otherwise waits 40 ms per answer for a delayed
    ACK); ``shared`` lets other processes listen on the same port, the kernel spreading connections."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if shared:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    return sock


def _start_worker(path: Path, limits: tuple[int, int], host: str, names: tuple[str, ...], port: int):
    """Another server process on the same port (started fresh: never a fork of this one)."""
    import multiprocessing

    worker = multiprocessing.get_context("spawn").Process(target=serve_worker, args=(str(path), limits, host, names, port), daemon=True)
    worker.start()
    return worker


def serve_worker(path: str, limits: tuple[int, int], host: str, names: tuple[str, ...], port: int) -> None:
    """One more process of ``visret serve --workers N``: its own app and socket; it ends with the first."""
    import multiprocessing
    import threading

    import uvicorn

    from visret.serve.app import create_app

    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=lambda: (parent.join(), os._exit(0)), daemon=True).start()
    app = create_app(path, *limits, host=host, allow_hosts=names)
    stopping_server(uvicorn, app).run(sockets=[listen(host, port, shared=True)])
