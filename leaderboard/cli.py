"""`synthbench leaderboard build|serve|validate|audit|keygen`."""

from __future__ import annotations

import argparse
import functools
import http.server
import logging
from pathlib import Path

from benchmark.cliargs import positive_int
from benchmark.errors import SynthbenchError

log = logging.getLogger(__name__)

DEFAULT_SUBMISSIONS = "submissions"
DEFAULT_SITE = "leaderboard/site"


def _verified_tree(args: argparse.Namespace):
    """The tree verified against the --task tasks (default: the task/ folder beside it) and --keys."""
    from .tree import discover_task_sources, load_task_truths, validate_tree

    sources = args.task or discover_task_sources(args.submissions)
    keys = None
    if args.keys:
        from benchmark.signing import load_public_keys

        keys = load_public_keys(args.keys)
    return validate_tree(Path(args.submissions), tasks=load_task_truths(sources), public_keys=keys)


def _report(args: argparse.Namespace, tree) -> None:
    n_records = sum(1 for _ in tree.records())
    task = f" on {tree.task['name']}@{tree.task['revision']}" if tree.task else ""
    checked = ", ".join(f"{t.name} ({t.source})" for t in tree.tasks) or "none (pass --task)"
    print(f"{args.submissions}: {len(tree.submissions)} submissions, {n_records} result records shown{task}; "
          f"checked against task(s): {checked}")
    if tree.problems:
        print(f"{len(tree.problems)} problem(s):")
        for problem in tree.problems:
            print(f"  [{problem.shown_as}] {problem}")


def _build(args: argparse.Namespace) -> int:
    from .site import write_site  # matplotlib and pandas only when building

    tree = _verified_tree(args)
    _report(args, tree)
    if args.strict and tree.problems:
        print("--strict: not published")
        return 1
    out = write_site(tree, Path(args.out))
    print(f"leaderboard site: {(out / 'index.html').resolve()}")
    return 0


def _validate(args: argparse.Namespace) -> int:
    tree = _verified_tree(args)
    _report(args, tree)
    if tree.problems:  # validate is the strict check (the pull-request workflow's)
        return 1
    print(f"{args.submissions}: ok")
    return 0


def _audit(args: argparse.Namespace) -> int:
    from .audit import audit_record

    report = audit_record(
        args.record, args.task, seeds_per_setting=args.seeds_per_setting, device=args.device,
        weights=args.weights, cache_dir=args.cache_dir, image_size=args.image_size, progress=not args.no_progress,
    )
    print(report.summary())
    return 0 if report.ok else 1


def _keygen(args: argparse.Namespace) -> int:
    from benchmark.signing import generate_keypair

    key_id = generate_keypair(Path(args.private).expanduser(), Path(args.public))
    print(f"Ed25519 keypair {key_id}: private key {args.private} (keep it out of the repository), "
          f"public key {args.public} (commit it under leaderboard/keys/)")
    return 0


def _trust_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--submissions", default=DEFAULT_SUBMISSIONS, help="submissions folder (default: submissions/)")
    parser.add_argument(
        "--task", action="append", metavar="PATH_OR_REPO",
        help="a task the records are checked against: folder, Hub repo id or repo@revision (repeatable; "
        "default: the task/ folder beside --submissions, as `synthbench demo` lays out). A record of a task "
        "not given is unverified and not shown",
    )
    parser.add_argument(
        "--keys", action="append", metavar="PATH",
        help="maintainers' public key file(s) or folder(s) of *.pub (repeatable; default: "
        "$SYNTHBENCH_PUBLIC_KEYS or leaderboard/keys/)",
    )


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
    commands = parser.add_subparsers(dest="leaderboard_command", metavar="{build,serve,validate,audit,keygen}")
    commands.required = True

    build = commands.add_parser(
        "build", help="verify, aggregate and write the static site (atomically); bad entries are listed as not shown"
    )
    _trust_arguments(build)
    build.add_argument("--out", default=DEFAULT_SITE, help="site folder to (re)place (default: leaderboard/site)")
    build.add_argument("--strict", action="store_true", help="exit 1 and publish nothing when any entry has a problem")
    build.set_defaults(func=_build)

    validate = commands.add_parser(
        "validate", help="check the results tree as CI does (always strict); exit 1 listing every problem"
    )
    _trust_arguments(validate)
    validate.add_argument("--strict", action="store_true", help="accepted for symmetry with build: validate is always strict")
    validate.set_defaults(func=_validate)

    audit = commands.add_parser(
        "audit", help="re-run a sample of a record's runs (one seed per setting) and compare the predictions",
        description="Re-run a sample of RECORD's runs on its submission folder and compare every prediction: "
        "exact agreement is required on the same device kind (cpu/cuda), otherwise the agreement is reported.",
    )
    audit.add_argument("record", help="submissions/<id>/results/<backbone>__<protocol>.json")
    audit.add_argument("--task", required=True, help="the record's task: folder or Hub repo id")
    audit.add_argument("--seeds-per-setting", type=positive_int, default=1, help="seeds re-run per setting (default 1)")
    audit.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    audit.add_argument("--weights", default=None, help="local backbone weights file or folder (offline use)")
    audit.add_argument("--image-size", type=positive_int, default=None,
                       help="backbone input size (default: the record's backbone.input_size)")
    audit.add_argument("--cache-dir", default=None, help="feature cache folder")
    audit.add_argument("--no-progress", action="store_true", help="no progress bars")
    audit.set_defaults(func=_audit)

    keygen = commands.add_parser("keygen", help="make the maintainers' Ed25519 signing keypair")
    keygen.add_argument("--private", required=True, help="where to write the private key (outside the repository)")
    keygen.add_argument("--public", required=True, help="where to write the public key (e.g. leaderboard/keys/maintainers.pub)")
    keygen.set_defaults(func=_keygen)

    preview = commands.add_parser("serve", help="serve a built site locally with http.server")
    preview.add_argument("--site", default=DEFAULT_SITE, help="built site folder (default: leaderboard/site)")
    preview.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this machine only)")
    preview.add_argument("--port", type=_port, default=8000, help="port (default: 8000; 0 picks a free one)")
    preview.set_defaults(func=_serve)
