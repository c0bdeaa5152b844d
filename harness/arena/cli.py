"""`harness-arena SWEEP_DIR`: serve the human arena for a sweep and record the votes (harness/arena/server.py)."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import secrets
import socket
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

from harness.errors import HarnessError

TOKEN_ENV = "HARNESS_ARENA_TOKEN"
# where the UDP-connect trick aims to find the address this machine reaches others from: documentation addresses
# (RFC 5737, RFC 3849); connecting a UDP socket only picks a route, it sends nothing
ROUTE_PROBES = {socket.AF_INET: ("192.0.2.1", 9), socket.AF_INET6: ("2001:db8::1", 9)}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from harness.arena.rules import BASE_DWELL_MS, OVERLAP, Dwell

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
        f"printed in the URL, otherwise); shows in `ps` to every user of this machine: prefer ${TOKEN_ENV} or "
        "--token-file",
    )
    parser.add_argument(
        "--token-file",
        default=None,
        type=Path,
        metavar="FILE",
        help=f"read the token from the first line of FILE instead (or set ${TOKEN_ENV})",
    )
    parser.add_argument(
        "--require-token",
        action="store_true",
        help="require the token from every client, this machine's included: behind a reverse proxy or tunnel on this "
        "machine, whose requests all come from loopback (a random token is made and printed if none is given)",
    )
    parser.add_argument(
        "--overlap",
        type=float,
        default=OVERLAP,
        metavar="SHARE",
        help=f"share of each rater's votes sent to items another rater judged (up to three raters an item), so "
        f"agreement between raters can be measured (default {OVERLAP}; 0: every rater on fresh items)",
    )
    parser.add_argument(
        "--min-dwell",
        type=int,
        default=BASE_DWELL_MS,
        metavar="MS",
        help=f"a vote counts once its pair has been on screen for this long plus a per-character time, capped "
        f"(default {BASE_DWELL_MS}: {Dwell().describe()}; other values scale all three; 0: no minimum)",
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


def outbound_address(family: socket.AddressFamily) -> str | None:
    """The address this machine reaches other machines from (the source address of its route out), or None: a UDP
    socket connected to an outside address picks the route without sending a packet."""
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.connect(ROUTE_PROBES[family])
            address = probe.getsockname()[0]
    except (OSError, KeyError):
        return None
    ip = ipaddress.ip_address(address)
    return None if ip.is_loopback or ip.is_unspecified or ip.is_link_local else address


def reachable_host(bound: str) -> str:
    """The host to print for a socket bound to `bound`: itself, unless it is every address (0.0.0.0, ::), which no
    other machine can open; then this machine's outbound address, else a non-loopback address of its hostname, else
    the hostname."""
    if not ipaddress.ip_address(bound).is_unspecified:
        return bound
    families = [socket.AF_INET6, socket.AF_INET] if ":" in bound else [socket.AF_INET]
    for family in families:
        if address := outbound_address(family):
            return address
    hostname = socket.gethostname()
    try:
        addresses = [info[4][0] for info in socket.getaddrinfo(hostname, None, type=socket.SOCK_STREAM)]
    except OSError:
        addresses = []
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%")[0])
        if not (ip.is_loopback or ip.is_link_local) and (ip.version == 4 or ":" in bound):
            return address
    return hostname


def url_of(sock: socket.socket, token: str | None) -> str:
    host, port = sock.getsockname()[:2]
    host = reachable_host(host)
    name = f"[{host}]" if ":" in host else host
    return f"http://{name}:{port}/" + (f"?token={quote(token, safe='')}" if token else "")


def given_token(args: argparse.Namespace) -> str | None:
    """The token from --token, --token-file or $HARNESS_ARENA_TOKEN (in that order; None: none given)."""
    if args.token is not None and args.token_file is not None:
        raise HarnessError("harness-arena: --token and --token-file both given (expected one)")
    if args.token_file is not None:
        try:
            lines = args.token_file.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as error:
            raise HarnessError(f"harness-arena: --token-file {str(args.token_file)!r}: {error}") from None
        token, source = (lines[0].strip() if lines else ""), f"--token-file {args.token_file}"
    elif args.token is not None:
        token, source = args.token.strip(), "--token"
    elif os.environ.get(TOKEN_ENV) is not None:
        token, source = os.environ[TOKEN_ENV].strip(), f"${TOKEN_ENV}"
    else:
        return None
    if not token:
        raise HarnessError(f"harness-arena: {source} is empty (expected a secret to share with raters)")
    return token


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
    """The listening socket, the app, the token raters need (None: none) and the database URL."""
    from harness.arena.rules import Dwell
    from harness.arena.schedule import Arena
    from harness.arena.server import create_app
    from harness.arena.store import Store, default_url

    if not args.sweep_dir.is_dir():
        raise HarnessError(f"harness-arena: {args.sweep_dir} is not a directory (expected a sweep folder)")
    if args.min_dwell < 0:
        raise HarnessError(f"harness-arena: --min-dwell {args.min_dwell}: expected milliseconds, 0 or more")
    token = given_token(args)
    url = args.db or default_url(args.sweep_dir)
    arena = Arena.for_sweep(args.sweep_dir, Store(url), dwell=Dwell.scaled(args.min_dwell), overlap=args.overlap)
    sock = listen(args.host, args.port)
    if token is None and (args.require_token or not ipaddress.ip_address(sock.getsockname()[0]).is_loopback):
        token = secrets.token_urlsafe(16)
    return sock, create_app(arena, token, require_token=args.require_token), token, url
