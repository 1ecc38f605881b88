"""`sloexporter report`: a compliance report for one period, written as HTML, MD, JSON."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
# only argparse at import: `sloexporter --version` must not pay for the report's imports


def add_report_arguments(parser: argparse.ArgumentParser) -> None:
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--period", metavar="YYYY-MM", help="a calendar month, e.g. 2026-11")
    which.add_argument("--week", metavar="YYYY-Www", help="an ISO week, e.g. 2026-W47")
    which.add_argument("--quarter", metavar="YYYY-Qn", help="a quarter, e.g. 2026-Q4")
    which.add_argument("--from", dest="from_", metavar="TIME",
                       help="start of a custom range (ISO date or date-time); needs --to")
    parser.add_argument("--to", metavar="TIME", help="end of a custom range (exclusive)")
    parser.add_argument("--prometheus-url", metavar="URL",
                        help="the Prometheus holding the SLO series (or status.prometheus.url)")
    parser.add_argument("--slos", metavar="DIR", action="append", default=[],
                        help="SLO spec files or folders (repeatable)")
    parser.add_argument("--config", metavar="FILE", help="serve config; its status section "
                        "gives Prometheus access and thresholds")
    parser.add_argument("--timezone", metavar="TZ", default=None,
                        help="time zone of the period (default: status.calendar.timezone "
                        "or UTC)")
    parser.add_argument("-o", "--output", metavar="DIR", default=".",
                        help="where to write slo-report-<period>.{html,md,json}")


def run_report(args: argparse.Namespace) -> int:
    import asyncio
    import time
    from zoneinfo import ZoneInfo

    from sloexporter.config import Config, load_config
    from sloexporter.specs.errors import SpecErrors, print_startup_error
    from sloexporter.status import calendar
    from sloexporter.status.config import check_timezone

    try:
        config = load_config(args.config) if args.config else Config()
    except SpecErrors as exc:
        return print_startup_error(exc)
    cfg = config.status
    try:
        tz_name = args.timezone or (cfg.calendar.timezone if cfg.calendar else "UTC")
        tz = ZoneInfo(check_timezone(tz_name))
        if args.from_ or args.to:
            if not (args.from_ and args.to):
                raise ValueError("--from needs --to")
            start, end = calendar.parse_time(args.from_, tz), calendar.parse_time(args.to, tz)
            if end <= start:
                raise ValueError("--to must be after --from")
            window = calendar.Window(f"{args.from_}_{args.to}", start, end)
        else:
            window = calendar.parse_period(args.period or args.week or args.quarter, tz)
            expected = "month" if args.period else "week" if args.week else "quarter"
            if window.kind != expected:
                raise ValueError(f"--{'period' if args.period else expected} takes a "
                                 f"{expected}, got {window.label}")
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    from sloexporter.status.web import status_from_args

    try:
        svc = status_from_args(cfg, args.prometheus_url, args.slos)
    except (SpecErrors, ValueError) as exc:
        return print_startup_error(exc)
    if svc is None:
        print("error: give --prometheus-url (or status.prometheus.url in --config)",
              file=sys.stderr)
        return EXIT_USAGE
    now = time.time()
    if window.start >= now:
        print(f"error: {window.label} has not started yet", file=sys.stderr)
        return EXIT_USAGE
    return asyncio.run(_write(svc, window, calendar.previous(window, tz), now,
                              Path(args.output)))


async def _write(svc: object, window: object, previous: object, now: float,
                 outdir: Path) -> int:
    from sloexporter.status import report
    from sloexporter.status.client import PrometheusError
    from sloexporter.status.service import StatusService

    assert isinstance(svc, StatusService)
    specs = svc.slo_models
    try:
        rep = await report.build_report(svc.client, specs, svc.cfg, window,  # type: ignore[arg-type]
                                        previous, now)  # type: ignore[arg-type]
    except (PrometheusError, TimeoutError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        await svc.client.close()
    if not rep["slos"]:
        print(f"error: no SLO to report for {rep['period']['label']}: give --slos, or check "
              "that Prometheus held SLO rules (slo:info, sloth_slo_info, pyrra_objective) "
              "in that period", file=sys.stderr)
        return EXIT_FAILED
    try:
        written = report.write(rep, outdir)
    except OSError as exc:
        print(f"error: cannot write the report: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"wrote {', '.join(str(p) for p in written)} ({len(rep['slos'])} SLOs)")
    return EXIT_OK
