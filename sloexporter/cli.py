"""The `sloexporter` command line: init, validate, generate, convert, serve.

Only argparse and the version are imported at start-up: each command imports what it
needs, so `--version`, `init` and `validate` never load the server stack (aiohttp,
kubernetes_asyncio), and `serve`'s options are added only when `serve` is the command.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import os
import sys
import textwrap
import types
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sloexporter import __version__

if TYPE_CHECKING:
    from sloexporter.specs.errors import SpecError

EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2


@contextlib.contextmanager
def _no_collection() -> Iterator[None]:
    """No cyclic garbage collection while a batch command runs (then as before).

    `validate` and `generate` build one large heap (modules, specs, models, rule groups)
    that lives until they exit and holds next to no garbage cycles; the collector would
    walk it again and again for nothing (at 5,000 SLOs, over a tenth of the run; for
    `validate` of one file, 5 ms of its imports)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        # what the run allocated goes to the oldest generation in O(1) (freeze, then
        # unfreeze): re-enabled, the collector would otherwise walk it all at once
        gc.freeze()
        gc.unfreeze()
        if was_enabled:
            gc.enable()


def _print_errors(errors: list[SpecError]) -> None:
    for err in errors:
        print(err, file=sys.stderr)


def _exit_code(errors: list[SpecError]) -> int:
    """2 when a path given on the command line is wrong, else 1 for bad input."""
    return EXIT_USAGE if any(e.usage for e in errors) else EXIT_INVALID


def cmd_init(args: argparse.Namespace) -> int:
    import os
    import tempfile

    from sloexporter import starter
    from sloexporter.specs import load_text

    selector = args.selector
    if args.job is not None:
        selector = starter.selector_for(args.convention, args.job)
    threshold = None if args.latency_threshold in ("none", "") else args.latency_threshold
    try:
        text = starter.render(starter.Starter(
            service=args.service, convention=args.convention, selector=selector,
            objective=args.objective, latency_threshold=threshold,
            latency_objective=args.latency_objective, period=args.period, team=args.team))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    # the starter must validate: check it with the same loader `validate` uses
    _, errors = load_text(text, "spec.yaml")
    if errors:
        print("error: these values do not make a valid spec:", file=sys.stderr)
        for err in errors:
            print(f"  {err.path + ': ' if err.path else ''}{err.message}", file=sys.stderr)
        return EXIT_USAGE
    if args.output in (None, "-"):
        sys.stdout.write(text)
        return EXIT_OK
    target = Path(args.output)
    if target.is_dir():
        print(f"error: {target} is a folder; give a file name, e.g. {target / args.service}"
              ".yaml", file=sys.stderr)
        return EXIT_USAGE
    if target.exists() and not args.force:
        print(f"error: {target} exists; --force overwrites it", file=sys.stderr)
        return EXIT_USAGE
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        # written beside the target, then renamed: never a half-written spec
        fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp_name, target)
    except OSError as exc:
        print(f"error: cannot write {target}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(f"wrote {target}; next: sloexporter validate {target}", file=sys.stderr)
    return EXIT_OK


def cmd_validate(args: argparse.Namespace) -> int:
    from sloexporter import parallel
    from sloexporter.specs import load_paths

    with parallel.batch():  # on every core (sloexporter.parallel)
        services, errors = load_paths(args.paths)
    _print_errors(errors)
    if errors:
        return _exit_code(errors)
    count = sum(len(s.slos) for s in services)
    print(f"ok: {count} SLOs in {len(services)} services")
    return EXIT_OK


def cmd_generate(args: argparse.Namespace) -> int:
    """load -> model -> artefacts -> write (see sloexporter.output)."""
    from sloexporter import parallel

    with parallel.batch():  # on every core (sloexporter.parallel)
        return _generate(args)


def _generate(args: argparse.Namespace) -> int:
    from sloexporter import output
    from sloexporter.specs import load_paths
    from sloexporter.specs.errors import SpecErrors

    to_stdout = args.output == "-"
    if to_stdout and args.ruler_files:
        print("error: --ruler-files writes files; give an output folder, not -o -",
              file=sys.stderr)
        return EXIT_USAGE
    if to_stdout and args.with_tests:
        print("error: --with-tests writes files; give an output folder, not -o -",
              file=sys.stderr)
        return EXIT_USAGE
    try:
        rule_labels = output.parse_rule_labels(args.rule_labels, args.format)
        external, global_labels = _cluster_options(args, rule_labels)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE

    services, errors = load_paths(args.paths)
    settings = None
    if args.alertmanager_settings:
        from sloexporter import alertmanager

        try:
            settings = alertmanager.load_settings(args.alertmanager_settings)
        except SpecErrors as exc:
            errors = [*errors, *exc.errors]
    if errors:
        _print_errors(errors)
        return _exit_code(errors)
    try:
        from sloexporter.clusters import with_external_labels

        with_external_labels(services, external)  # a clash with a spec: before any output
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    options = output.Options(fmt=args.format, with_tests=args.with_tests,
                             rule_labels=rule_labels, alertmanager=settings,
                             external_labels=external,
                             max_rules_per_group=args.max_rules_per_group,
                             global_labels=global_labels, ruler_files=args.ruler_files)
    if to_stdout:
        try:
            text = output.rules_stream(services, options)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_INVALID
        sys.stdout.write(text)
        return EXIT_OK
    skipped: list[Any] = []
    files = output.artefacts(services, options, skipped)
    try:
        written, notes = output.write_tree(Path(args.output), files)
    except output.OutputError as exc:
        print(f"error: {exc}; nothing was written", file=sys.stderr)
        return EXIT_USAGE
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    for skip in skipped:
        print(f"warning: {skip}", file=sys.stderr)
    print(f"wrote {len(written)} files for {sum(len(s.slos) for s in services)} SLOs "
          f"to {args.output}")
    if args.with_tests:
        from sloexporter.testgen import summary

        line = summary(services, skipped)
        if line:
            print(f"warning: {line}", file=sys.stderr)
    return EXIT_OK


def _cluster_options(args: argparse.Namespace, rule_labels: dict[str, str],
                     ) -> tuple[dict[str, str], tuple[str, ...] | None]:
    """--external-labels, and the cluster labels of --global; ValueError when bad."""
    from sloexporter.clusters import check_label_name, parse_external_labels

    external = parse_external_labels(args.external_labels)
    both = sorted(set(external) & set(rule_labels))
    if both:
        raise ValueError(f"--external-labels and --rule-labels both set {both[0]!r}")
    if args.max_rules_per_group is not None and args.max_rules_per_group < 1:
        raise ValueError("--max-rules-per-group must be at least 1")
    if args.global_labels and not args.global_rules:
        raise ValueError("--global-labels needs --global")
    if not args.global_rules:
        return external, None
    names = [n.strip() for item in args.global_labels for n in item.split(",") if n.strip()]
    for name in names:
        check_label_name(name, "--global-labels")
        if name in ("service", "slo", "__name__"):
            raise ValueError(f"--global-labels {name!r}: the SLO's own label, not a "
                             "cluster's")
    labels = tuple(dict.fromkeys(names)) or tuple(sorted(external)) or ("cluster",)
    return external, labels


def cmd_convert(args: argparse.Namespace) -> int:
    from sloexporter.convert import convert_models, convert_paths
    from sloexporter.output import OutputError

    try:
        if args.to == "openslo":
            written, errors = convert_paths(args.paths, Path(args.output))
        else:
            written, errors = convert_models(args.paths, Path(args.output), args.to)
    except OutputError as exc:
        print(f"error: {exc}; nothing was written", file=sys.stderr)
        return EXIT_USAGE
    for err in errors:
        print(err if not isinstance(err, str) else f"error: {err}", file=sys.stderr)
    if errors:
        return EXIT_INVALID
    print(f"wrote {len(written)} {args.to} files to {args.output}")
    return EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    from sloexporter.server import run_serve

    return run_serve(args)


EXIT_CODES = """exit codes:
  0  success
  1  invalid input: a spec or settings file has errors (one FILE:LINE: line each)
  2  usage or path error: a bad option, a missing file or folder"""

FORMATS = """input formats (detected per document, mixed freely in one run):
  native   apiVersion: sloexporter.dev/v1, kind: ServiceLevels
  Sloth    version: prometheus/v1 (and kind: PrometheusServiceLevel, AlertWindows)
  Pyrra    apiVersion: pyrra.dev/v1alpha1, kind: ServiceLevelObjective
  OpenSLO  apiVersion: openslo/v1 or openslo/v1alpha (SLO, SLI, AlertPolicy, ... by reference)"""

PATHS_HELP = "spec files or folders (folders are read recursively for *.yaml and *.yml)"


def _command(sub: Any, name: str, summary: str, description: str, examples: str,
             extra: str = "") -> argparse.ArgumentParser:
    epilog = f"examples:\n{examples}\n\n{extra + chr(10) * 2 if extra else ''}{EXIT_CODES}"
    return sub.add_parser(name, help=summary, description=textwrap.fill(description, 79),
                          epilog=epilog, formatter_class=_Formatter)


def _add_init(sub: Any) -> None:
    init = _command(
        sub, "init", "print or write a commented starter spec for one HTTP service",
        "Write a native spec with an availability SLO (requests without a 5xx) and a "
        "latency SLO (requests faster than a threshold) over the HTTP metrics of one "
        "instrumentation convention. The spec is validated before it is written.",
        "  sloexporter init checkout --job checkout > slos/checkout.yaml\n"
        "  sloexporter init checkout --convention prometheus --job checkout \\\n"
        "      --objective 99.9 --latency-threshold 0.5 -o slos/checkout.yaml\n"
        "  sloexporter init auth --convention otel --selector '{service_name=\"auth\"}' "
        "--team identity")
    init.add_argument("service", metavar="SERVICE",
                      help="the service name: letters, digits, '_', '.' and '-'")
    init.add_argument("--convention", choices=("otel", "prometheus", "requests_total"),
                      default="prometheus",
                      help="the HTTP metrics the service exports: otel "
                           "(http_server_request_duration_seconds), prometheus "
                           "(http_request_duration_seconds, prom-client/express) or "
                           "requests_total (http_requests_total, no latency SLO); "
                           "default: prometheus")
    who = init.add_mutually_exclusive_group()
    who.add_argument("--job", metavar="NAME",
                     help="select the series by job (service_name for otel); "
                          "default: the service name")
    who.add_argument("--selector", metavar="'{...}'",
                     help="select the series by any PromQL label matchers instead, "
                          "e.g. '{namespace=\"shop\",app=\"checkout\"}'")
    init.add_argument("--objective", default="99.9", metavar="PERCENT",
                      help="availability objective in percent, above 0 and below 100 "
                           "(default: 99.9)")
    init.add_argument("--latency-threshold", default="0.5", metavar="SECONDS",
                      help="latency threshold in seconds, a bucket boundary of the "
                           "histogram; 'none' leaves out the latency SLO (default: 0.5)")
    init.add_argument("--latency-objective", default="99", metavar="PERCENT",
                      help="share of requests faster than the threshold (default: 99)")
    init.add_argument("--period", default="30d", metavar="DURATION",
                      help="the SLO period, 1d to 90d, e.g. 28d or 4w (default: 30d)")
    init.add_argument("--team", metavar="TEAM",
                      help="a team label on every series and alert (Alertmanager can "
                           "route on it)")
    init.add_argument("-o", "--output", metavar="FILE",
                      help="write the spec to FILE ('-' or unset: stdout); an existing "
                           "file is kept unless --force")
    init.add_argument("--force", action="store_true", help="overwrite an existing FILE")
    init.set_defaults(func=cmd_init)


def _add_validate(sub: Any) -> None:
    validate = _command(
        sub, "validate", "check spec files or folders, reporting every problem",
        "Check SLO specs: the schema, PromQL syntax, objectives, periods, duplicate "
        "names, selectors and latency thresholds. Every problem in every file is one "
        "line, FILE:LINE: field.path: message.",
        "  sloexporter validate slos/\n"
        "  sloexporter validate slos/checkout.yaml sloth/*.yaml",
        FORMATS)
    validate.add_argument("paths", nargs="+", metavar="PATH", help=PATHS_HELP)
    validate.set_defaults(func=cmd_validate)


def _add_generate(sub: Any) -> None:
    generate = _command(
        sub, "generate", "write rules, promtool tests, dashboards and alert routes",
        "Generate, for every SLO in PATH: Prometheus recording and multiwindow, "
        "multi-burn-rate alerting rules (OUTDIR/rules/SERVICE.yaml), with --with-tests "
        "promtool unit tests (OUTDIR/tests/), Grafana dashboards (OUTDIR/dashboards/) "
        "and Alertmanager routes (OUTDIR/alertmanager/). Output is deterministic.",
        "  sloexporter generate slos/ -o out --with-tests\n"
        "  promtool check rules out/rules/*.yaml && "
        "(cd out/tests && promtool test rules *.test.yaml)\n"
        "  sloexporter generate slos/ -o out --format prometheus-operator "
        "--rule-labels release=kube-prometheus-stack\n"
        "  sloexporter generate slos/checkout.yaml -o - | kubectl apply -f -   "
        "# with --format prometheus-operator",
        FORMATS)
    generate.add_argument("paths", nargs="+", metavar="PATH", help=PATHS_HELP)
    generate.add_argument("-o", "--output", required=True, metavar="OUTDIR",
                          help="the output folder, created when missing; '-' writes only "
                               "the rules to stdout")
    generate.add_argument("--format", choices=("prometheus", "prometheus-operator"),
                          default="prometheus",
                          help="rule files as plain Prometheus rule files (default) or "
                               "as monitoring.coreos.com/v1 PrometheusRule objects")
    generate.add_argument("--with-tests", action="store_true",
                          help="also write promtool unit tests that prove every SLO's "
                               "alerts fire (OUTDIR/tests/SERVICE.test.yaml)")
    generate.add_argument("--rule-labels", action="append", default=[], metavar="K=V[,K=V]",
                          help="labels on every generated alert and, with --format "
                               "prometheus-operator, on each PrometheusRule's metadata, e.g. "
                               "release=kube-prometheus-stack for its rule selector "
                               "(repeatable)")
    generate.add_argument("--external-labels", action="append", default=[],
                          metavar="K=V[,K=V]",
                          help="constant labels on every generated series and alert, e.g. "
                               "cluster=eu-1 when each cluster's Prometheus evaluates its "
                               "own rules (repeatable; see docs/many-clusters.md)")
    generate.add_argument("--global", dest="global_rules", action="store_true",
                          help="also write OUTDIR/global/SERVICE.yaml: rules for a ruler "
                               "over the store of every cluster (Thanos, Mimir, vmalert) "
                               "that sum the clusters' recorded SLIs, with their own "
                               "alerts; with -o -, only those rules")
    generate.add_argument("--global-labels", action="append", default=[],
                          metavar="LABEL[,LABEL]",
                          help="the labels that tell clusters apart, for --global "
                               "(default: the --external-labels names, else cluster)")
    generate.add_argument("--max-rules-per-group", type=int, metavar="N",
                          help="split rule groups to at most N rules each (Mimir's "
                               "default limit is 20); default: no limit")
    generate.add_argument("--ruler-files", action="store_true",
                          help="also write each rule group to its own file, "
                               "OUTDIR/ruler/SERVICE/GROUP.yaml (and ruler-global/ with "
                               "--global): the body of a Mimir or Cortex ruler API call")
    generate.add_argument("--alertmanager-settings", metavar="FILE",
                          help="Slack, email, PagerDuty and routing settings for the "
                               "Alertmanager routes (see examples/alertmanager-settings.yaml)")
    generate.set_defaults(func=cmd_generate)


def _add_convert(sub: Any) -> None:
    convert = _command(
        sub, "convert", "rewrite specs as native, Sloth or OpenSLO specs",
        "Convert SLO specs, one file per service in OUTDIR. --to native and --to sloth "
        "read every input format and keep the generated rules the same (SLIs become "
        "events or ratio queries); what the target cannot express is an error naming "
        "the SLO. --to openslo reads native specs and keeps everything, so converting "
        "back gives the same rules.",
        "  sloexporter convert sloth/ --to native -o slos/      # migrate from Sloth\n"
        "  sloexporter convert slos/ --to sloth -o sloth/\n"
        "  sloexporter convert slos/ --to openslo -o openslo/",
        FORMATS)
    convert.add_argument("paths", nargs="+", metavar="PATH", help=PATHS_HELP)
    convert.add_argument("--to", choices=("native", "sloth", "openslo"), required=True,
                         help="target format: native (sloexporter.dev/v1), sloth "
                              "(prometheus/v1) or openslo (OpenSLO v1)")
    convert.add_argument("-o", "--output", required=True, metavar="OUTDIR",
                         help="the output folder, created when missing")
    convert.set_defaults(func=cmd_convert)


SERVE_ENDPOINTS = """endpoints:
  /metrics  Prometheus text, or OpenMetrics when the scraper asks; gzip when asked
  /healthz  200 while the process lives
  /readyz   200 once every enabled source has completed its first list, else 503
  /         a landing page linking the endpoints; with --prometheus-url the SLO list
  /api/v1/slos, /api/v1/slos/SERVICE/SLO, /api/v1/platform, /api/v1/gate?service=S
            the SLO status API, with --prometheus-url (see docs/status.md)

signals:
  SIGTERM   stop within 2 s (in-flight scrapes are dropped)
  SIGHUP    reload --config; a config that does not validate is refused, the running
            one kept (see docs/serve.md)"""


def _add_serve(sub: Any, with_options: bool) -> None:
    serve = _command(
        sub, "serve", "run the exporter (ArgoCD, backups, certificates, probes)",
        "Watch ArgoCD Applications, backups (CronJob/Job, Velero), certificates "
        "(cert-manager, TLS Secrets, live TLS endpoints) and HTTP probe targets, and "
        "export them on /metrics. Without --config every source is on with its "
        "defaults and the cluster is found in-cluster or from the kubeconfig.",
        "  sloexporter serve --manifests examples/cluster --listen 127.0.0.1:9469\n"
        "  sloexporter serve --config config.yaml\n"
        "  sloexporter serve --config config.yaml --shard 0 --total-shards 3",
        SERVE_ENDPOINTS)
    if with_options:
        # the server stack (aiohttp, kubernetes_asyncio) loads only when serve runs
        from sloexporter.server import add_serve_arguments

        add_serve_arguments(serve)
    serve.set_defaults(func=cmd_serve)


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """argparse's formatter, with the terminal's width found without `shutil`, which
    imports bz2 and lzma (2 ms of `validate`, where argparse makes a formatter for every
    option it adds)."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
                 width: int | None = None) -> None:
        if width is None:
            width = _columns() - 2
        super().__init__(prog, indent_increment, max_help_position, width)


def _columns() -> int:
    """The terminal's width as `shutil.get_terminal_size` finds it: $COLUMNS, else the
    terminal's, else 80."""
    with contextlib.suppress(ValueError):
        if (columns := int(os.environ.get("COLUMNS", "0"))) > 0:
            return columns
    try:
        return os.get_terminal_size(sys.__stdout__.fileno()).columns or 80
    except (AttributeError, ValueError, OSError):  # no stdout, or not a terminal
        return 80


def build_parser(with_serve_options: bool = True,
                 only: str | None = None) -> argparse.ArgumentParser:
    """The whole command line; with `only` a command's name, that command alone (what
    `main` parses once it knows the command: the others' options are never built)."""
    parser = argparse.ArgumentParser(
        prog="sloexporter",
        description=textwrap.fill(
            "SLOs for Kubernetes platforms: multiwindow, multi-burn-rate rules with "
            "promtool tests, Grafana dashboards and Alertmanager routes from SLO specs, "
            "and an exporter for ArgoCD, backups, certificates and HTTP golden signals.", 79),
        epilog="first steps:\n"
               "  sloexporter init checkout --job checkout -o slos/checkout.yaml\n"
               "  sloexporter validate slos\n"
               "  sloexporter generate slos -o out --with-tests\n\n"
               "Run 'sloexporter COMMAND --help' for a command's options and examples.\n\n"
               + EXIT_CODES,
        formatter_class=_Formatter)
    parser.add_argument("--version", action="version", version=f"sloexporter {__version__}",
                        help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands = {"init": _add_init, "validate": _add_validate, "generate": _add_generate,
                "convert": _add_convert,
                "serve": lambda sub: _add_serve(sub, with_serve_options),
                "report": _add_report}
    for name, add in commands.items():
        if only not in commands or name == only:
            add(sub)
    return parser


def _add_report(sub: Any) -> None:
    from sloexporter.status.cli import add_report_arguments, run_report

    report = _command(
        sub, "report", "write an SLO compliance report for a period, from Prometheus",
        "Compute, from the recorded series in Prometheus, each SLO's SLI against its "
        "objective, budget consumed and left, the change from the previous period, the "
        "peak 1h burn rate, alerts fired and minutes firing, minutes without data and "
        "the status, rolled up per service and team; write slo-report-<period>.html, "
        ".md and .json. Exit 1 also when Prometheus cannot be queried (see "
        "docs/status.md).",
        "  sloexporter report --prometheus-url http://localhost:9090 --period 2026-11\n"
        "  sloexporter report --prometheus-url URL --slos slos/ --quarter 2026-Q4 -o out\n"
        "  sloexporter report --prometheus-url URL --from 2026-11-01 --to 2026-11-15")
    add_report_arguments(report)
    report.set_defaults(func=run_report)


#: the values of PYDANTIC_DISABLE_PLUGINS that turn every pydantic plugin off
_PLUGINS_OFF = ("__all__", "1", "true")
_PLUGIN_LOADER = "pydantic.plugin._loader"


class _NoPluginLoader(types.ModuleType):
    """Stands in for pydantic's plugin loader while plugins are off. The real one imports
    importlib.metadata, and with it the email package, before it reads the setting: 13 ms,
    a tenth of `validate`. Any other name than `get_plugins` loads the real module."""

    @staticmethod
    def get_plugins() -> tuple[()]:
        return ()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):  # the import system's probes, such as `__path__`
            raise AttributeError(name)
        if sys.modules.get(_PLUGIN_LOADER) is self:
            del sys.modules[_PLUGIN_LOADER]
        return getattr(importlib.import_module(_PLUGIN_LOADER), name)


def _no_pydantic_plugins() -> None:
    """sloexporter's models use no pydantic plugin; looking for them reads the metadata of
    every installed distribution. A user who sets PYDANTIC_DISABLE_PLUGINS keeps their
    setting, and the real loader."""
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    if (os.environ["PYDANTIC_DISABLE_PLUGINS"] in _PLUGINS_OFF
            and _PLUGIN_LOADER not in sys.modules):
        sys.modules[_PLUGIN_LOADER] = _NoPluginLoader(_PLUGIN_LOADER)


def _command_name(argv: Sequence[str]) -> str | None:
    """The subcommand named in argv (the first word that is not an option)."""
    return next((a for a in argv if not a.startswith("-")), None)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    _no_pydantic_plugins()
    command = _command_name(argv)
    with _no_collection() if command in BATCH else contextlib.nullcontext():
        # the command first (not after `--help`): only its parser is built
        only = command if argv[:1] == [command] else None
        parser = build_parser(with_serve_options=command == "serve", only=only)
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help(sys.stderr)
            return EXIT_USAGE
        return int(args.func(args))


#: commands that build one large heap and then end: no garbage collection while they run,
#: and the process leaves without freeing the heap
BATCH = ("validate", "generate", "convert")


def entry() -> None:
    """The `sloexporter` program: `main`, then exit. After a batch command the heap (every
    model and rendered file) goes back to the OS at once, where the interpreter would
    free it object by object (at 1,000 SLOs, about a sixth of `generate`'s time)."""
    code = main()
    if _command_name(sys.argv[1:]) not in BATCH:
        sys.exit(code)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (BrokenPipeError, ValueError):  # a closed pipe: let the interpreter report it
        sys.exit(code)
    os._exit(code)


if __name__ == "__main__":
    entry()
