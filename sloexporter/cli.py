"""The `sloexporter` command line: validate, generate, serve."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from sloexporter import __version__
from sloexporter.specs.errors import SpecError, SpecErrors

EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2


def _print_errors(errors: list[SpecError]) -> None:
    for err in errors:
        print(err, file=sys.stderr)


def cmd_validate(args: argparse.Namespace) -> int:
    from sloexporter.specs import load_paths

    services, errors = load_paths(args.paths)
    _print_errors(errors)
    if errors:
        return EXIT_INVALID
    count = sum(len(s.slos) for s in services)
    print(f"ok: {count} SLOs in {len(services)} services")
    return EXIT_OK


def cmd_generate(args: argparse.Namespace) -> int:
    from sloexporter import alertmanager
    from sloexporter.output import write_all
    from sloexporter.specs import load_paths
    from sloexporter.testgen import SynthesisError

    services, errors = load_paths(args.paths)
    am_settings = alertmanager.Settings()
    if args.alertmanager_settings:
        try:
            am_settings = alertmanager.load_settings(args.alertmanager_settings)
        except SpecErrors as exc:
            errors = [*errors, *exc.errors]
    if errors:
        _print_errors(errors)
        return EXIT_INVALID
    try:
        with alertmanager.using(am_settings):
            written = write_all(services, Path(args.output), args.format, args.with_tests)
    except SynthesisError as exc:
        print(f"error: cannot generate promtool tests: {exc}", file=sys.stderr)
        return EXIT_INVALID
    except OSError as exc:
        print(f"error: cannot write output: {exc}", file=sys.stderr)
        return EXIT_INVALID
    print(f"wrote {len(written)} files for {sum(len(s.slos) for s in services)} SLOs "
          f"to {args.output}")
    return EXIT_OK


def cmd_convert(args: argparse.Namespace) -> int:
    from sloexporter.convert import convert_paths

    try:
        written, errors = convert_paths(args.paths, Path(args.output))
    except OSError as exc:
        print(f"error: cannot write output: {exc}", file=sys.stderr)
        return EXIT_INVALID
    _print_errors(errors)
    if errors:
        return EXIT_INVALID
    print(f"wrote {len(written)} {args.to} files to {args.output}")
    return EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    from sloexporter.server import run_serve

    return run_serve(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sloexporter",
        description="SLOs for Kubernetes platforms: rules, dashboards, alert routes, exporter.")
    parser.add_argument("--version", action="version", version=f"sloexporter {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    validate = sub.add_parser("validate", help="check spec files or folders")
    validate.add_argument("paths", nargs="+", metavar="PATH")
    validate.set_defaults(func=cmd_validate)

    generate = sub.add_parser("generate", help="write rules, dashboards and alert routes")
    generate.add_argument("paths", nargs="+", metavar="PATH")
    generate.add_argument("-o", "--output", required=True, metavar="OUTDIR")
    generate.add_argument("--format", choices=("prometheus", "prometheus-operator"),
                          default="prometheus", help="rule file format (default: prometheus)")
    generate.add_argument("--with-tests", action="store_true",
                          help="also write promtool unit tests for every SLO")
    generate.add_argument("--alertmanager-settings", metavar="FILE",
                          help="Slack, email and PagerDuty settings for the Alertmanager routes "
                               "(see examples/alertmanager-settings.yaml)")
    generate.set_defaults(func=cmd_generate)

    convert = sub.add_parser("convert", help="write native specs in another SLO format")
    convert.add_argument("paths", nargs="+", metavar="PATH")
    convert.add_argument("--to", choices=("openslo",), required=True,
                         help="target format: openslo (OpenSLO v1)")
    convert.add_argument("-o", "--output", required=True, metavar="OUTDIR")
    convert.set_defaults(func=cmd_convert)

    serve = sub.add_parser("serve", help="run the exporter")
    try:
        from sloexporter.server import add_serve_arguments
    except ImportError:  # the server needs its optional pieces; validate/generate do not
        serve.set_defaults(func=lambda _a: EXIT_USAGE)
    else:
        add_serve_arguments(serve)
        serve.set_defaults(func=cmd_serve)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
