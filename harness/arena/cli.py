"""`harness-arena SWEEP_DIR`: serve the human arena for a sweep and record the votes (harness/arena/server.py)."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import secrets
import socket
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

from harness.errors import HarnessError


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="harness-arena",
        description="Show raters one prompt and two methods' completions of a sweep, blind and in random order, and "
        "record their votes (A, B or tie). The report of the sweep reads the votes as the `human` suite.",
    )
    parser.add_argument("sweep_dir", type=Path, help="a sweep directory (results/sweeps/<experiment>/<time>)")
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 lets other machines in, with a "
        "token)",
    )
    parser.add_argument("--port", type=int, default=8765, help="port to listen on (0: any free port; default 8765)")
    parser.add_argument(
        "--db",
        default=None,
        metavar="URL",
        help="SQLAlchemy database URL for the votes (default: sqlite:///SWEEP_DIR/arena.sqlite)",
    )
    parser.add_argument(
        "--token",
        default=None,
        help="what raters on other machines must present (default: none on a loopback address, a random one, "
        "printed in the URL, otherwise); clients on this machine never need it",
    )
    parser.add_argument(
        "--export",
        default=None,
        type=Path,
        metavar="FILE",
        help="do not serve: write the votes as a preference dataset (JSON lines: prompt, chosen, rejected) that "
        "`task=hf_preferences task.path=FILE` reads, and exit",
    )
    return parser.parse_args(argv)


def export(args: argparse.Namespace) -> str:
    """`--export FILE`: the votes recorded for the sweep as preference pairs; returns the line to print."""
    from harness.arena.export import export_preferences
    from harness.arena.store import default_url, load_votes

    if not args.sweep_dir.is_dir():
        raise HarnessError(f"harness-arena: {args.sweep_dir} is not a directory (expected a sweep folder)")
    return export_preferences(load_votes(args.db or default_url(args.sweep_dir)), args.export).message


def listen(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (port 0: a free one), bound before the URL is printed so that URL is real."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as error:
        raise HarnessError(
            f"harness-arena: --host {host!r}: {error.strerror} (expected an address of this machine)"
        ) from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as error:
        sock.close()
        raise HarnessError(
            f"harness-arena: cannot listen on {host}:{port}: {error.strerror} "
            "(expected an address of this machine and a free port)"
        ) from None
    sock.listen(128)
    return sock


def url_of(sock: socket.socket, token: str | None) -> str:
    host, port = sock.getsockname()[:2]
    name = f"[{host}]" if ":" in host else host
    return f"http://{name}:{port}/" + (f"?token={quote(token, safe='')}" if token else "")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.export is not None:
        try:
            print(export(args))
        except HarnessError as error:
            print(f"error: {error}", file=sys.stderr)
            sys.exit(2)
        return
    try:
        sock, app, token, url = setup(args)
    except HarnessError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    import uvicorn

    from harness.arena.store import printable_url

    print(f"arena: {url_of(sock, token)}", flush=True)
    print(f"votes: {printable_url(url)}", flush=True)
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        proxy_headers=False,  # a client's address is its connection's, never what an X-Forwarded-For header says
        server_header=False,
        lifespan="off",
    )
    uvicorn.Server(config).run(sockets=[sock])


def setup(args: argparse.Namespace) -> tuple[socket.socket, Any, str | None, str]:
    """The listening socket, the app, the token raters on other machines need (None: none) and the database URL."""
    from harness.arena.server import Arena, create_app
    from harness.arena.store import Store, default_url

    if not args.sweep_dir.is_dir():
        raise HarnessError(f"harness-arena: {args.sweep_dir} is not a directory (expected a sweep folder)")
    if args.token is not None and not args.token.strip():
        raise HarnessError("harness-arena: --token is empty (expected a secret to share with raters)")
    url = args.db or default_url(args.sweep_dir)
    arena = Arena(args.sweep_dir, Store(url))
    sock = listen(args.host, args.port)
    token = args.token
    if token is None and not ipaddress.ip_address(sock.getsockname()[0]).is_loopback:
        token = secrets.token_urlsafe(16)
    return sock, create_app(arena, token), token, url
