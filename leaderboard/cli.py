"""`synthbench leaderboard build|serve|validate`."""

from __future__ import annotations

import argparse
import functools
import http.server
import logging
from pathlib import Path

from benchmark.errors import SynthbenchError

log = logging.getLogger(__name__)

DEFAULT_SUBMISSIONS = "submissions"
DEFAULT_SITE = "leaderboard/site"


def _build(args: argparse.Namespace) -> int:
    from .site import build_site  # matplotlib and pandas only when building

    out = build_site(Path(args.submissions), Path(args.out))
    print(f"leaderboard site: {(out / 'index.html').resolve()}")
    return 0


def _validate(args: argparse.Namespace) -> int:
    from .tree import validate_tree

    tree = validate_tree(Path(args.submissions))
    n_records = sum(1 for _ in tree.records())
    if tree.problems:
        print(f"{args.submissions}: {len(tree.problems)} problem(s):")
        for problem in tree.problems:
            print(f"  {problem}")
        return 1
    task = f" on {tree.task['name']}@{tree.task['revision']}" if tree.task else ""
    print(f"{args.submissions}: ok ({len(tree.submissions)} submissions, {n_records} result records{task})")
    return 0


def serve(site: Path, host: str = "127.0.0.1", port: int = 8000) -> http.server.ThreadingHTTPServer:
    """An HTTP server for a built site (the caller runs serve_forever); local preview only."""
    if not (site / "index.html").is_file():
        raise SynthbenchError(f"{site}: no index.html; run `synthbench leaderboard build` first")
    handler = functools.partial(_QuietHandler, directory=str(site))
    try:
        return http.server.ThreadingHTTPServer((host, port), handler)
    except (OSError, OverflowError) as exc:  # port taken or out of range, unknown host, no permission
        raise SynthbenchError(f"cannot serve {site} at {host}:{port}: {exc}") from None


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args) -> None:  # noqa: A002 (the stdlib's name)
        log.debug("%s " + format, self.address_string(), *args)


def _serve(args: argparse.Namespace) -> int:
    server = serve(Path(args.site), args.host, args.port)
    host, port = server.server_address[:2]
    print(f"serving {Path(args.site).resolve()} at http://{host}:{port}/  (Ctrl-C to stop)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0 to 65535, got {value}")
    return value


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "leaderboard",
        help="validate the results tree and build or preview the static leaderboard site",
        description="Validate submissions/*/results/*.json, build the static leaderboard site, or preview it.",
    )
    commands = parser.add_subparsers(dest="leaderboard_command", metavar="{build,serve,validate}")
    commands.required = True

    build = commands.add_parser("build", help="validate, aggregate and write the static site (atomically)")
    build.add_argument("--submissions", default=DEFAULT_SUBMISSIONS, help="submissions folder (default: submissions/)")
    build.add_argument("--out", default=DEFAULT_SITE, help="site folder to (re)place (default: leaderboard/site)")
    build.set_defaults(func=_build)

    validate = commands.add_parser(
        "validate", help="check the results tree as CI does; exit 1 listing every problem"
    )
    validate.add_argument("--submissions", default=DEFAULT_SUBMISSIONS, help="submissions folder (default: submissions/)")
    validate.set_defaults(func=_validate)

    preview = commands.add_parser("serve", help="serve a built site locally with http.server")
    preview.add_argument("--site", default=DEFAULT_SITE, help="built site folder (default: leaderboard/site)")
    preview.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this machine only)")
    preview.add_argument("--port", type=_port, default=8000, help="port (default: 8000; 0 picks a free one)")
    preview.set_defaults(func=_serve)
