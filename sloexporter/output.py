"""`generate` as one pipeline: load -> model -> artefacts -> write.

`load_paths` (sloexporter.specs) gives the model; `artefacts` turns it into every output
file's text with pure functions (rules, promtool tests, dashboards, Alertmanager); and
`write_tree` puts them on disk all at once or not at all, removing what an earlier run
wrote that this one no longer produces. The writers never touch files, and none of them
imports this module: they render with `sloexporter.render`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from sloexporter import parallel, rules
from sloexporter.clusters import check_label_name, parse_pairs
from sloexporter.render import header, k8s_name, service_source, to_yaml

if TYPE_CHECKING:
    from sloexporter.alertmanager import Settings
    from sloexporter.model import Service

__all__ = ["RULE_FORMATS", "Options", "OutputError", "artefacts", "header", "k8s_name",
           "parse_rule_labels", "render_rules", "rule_document", "rules_stream",
           "service_source", "to_yaml", "write_all", "write_tree"]

RULE_FORMATS = ("prometheus", "prometheus-operator")
#: what `generate` wrote last time in OUTDIR, with each file's sha256
MANIFEST = ".sloexporter-manifest.json"
_STAGING = ".sloexporter-staging-"
_LOCK = ".sloexporter.lock"

#: labels our rules set themselves; --rule-labels may not replace them
RESERVED_LABELS = frozenset({"service", "slo", "severity", "long_window", "short_window",
                             "alertname"})
_K8S_KEY = re.compile(r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
                      r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
_K8S_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")


class OutputError(Exception):
    """The output folder cannot take the files (a path error: exit 2)."""


@dataclass(frozen=True)
class Options:
    """Everything `generate` may vary, passed explicitly to the writers that need it."""

    fmt: str = "prometheus"
    with_tests: bool = False
    #: labels on every rule, and on each PrometheusRule's metadata (its rule selector)
    rule_labels: Mapping[str, str] = field(default_factory=dict)
    #: the Alertmanager settings file's content; None: the embedded defaults
    alertmanager: Settings | None = None
    #: constant labels on every series and alert (see sloexporter.clusters)
    external_labels: Mapping[str, str] = field(default_factory=dict)
    #: split rule groups to at most this many rules (a ruler's limit); None: never
    max_rules_per_group: int | None = None
    #: write the global rule set (OUTDIR/global/), summing over these cluster labels
    global_labels: tuple[str, ...] | None = None
    #: also one file per rule group (OUTDIR/ruler/SERVICE/GROUP.yaml), the body of a
    #: Mimir or Cortex ruler's "set rule group" call
    ruler_files: bool = False


# ---- rules ------------------------------------------------------------------------------

def parse_rule_labels(items: list[str], fmt: str) -> dict[str, str]:
    """`k=v[,k=v]` options as labels; raises ValueError with the offending item."""
    labels = parse_pairs(items, "--rule-labels")
    for key, value in labels.items():
        if key in RESERVED_LABELS or key.startswith("__"):
            raise ValueError(f"--rule-labels {key!r}: the rules set this label themselves")
        check_label_name(key, "--rule-labels")
        if fmt == "prometheus-operator" and not _K8S_VALUE.match(value):
            raise ValueError(f"--rule-labels {key}={value!r}: a Kubernetes label value "
                             "is at most 63 letters, digits, '-', '_' or '.'")
    return labels


def _labelled(groups: list[dict[str, Any]], extra: Mapping[str, str]) -> list[dict[str, Any]]:
    """`groups` with `extra` on every alerting rule; a label the rule already sets keeps
    its value. Recording rules stay as they are: their series are joined with raw ones
    (`or ignoring (...)`), which labels added to one side only would break."""
    if not extra:
        return groups
    return [{**group, "rules": [{**rule, "labels": {**extra, **rule.get("labels", {})}}
                                if "alert" in rule else rule for rule in group["rules"]]}
            for group in groups]


def rule_document(service: Service, fmt: str = "prometheus",
                  rule_labels: Mapping[str, str] | None = None,
                  max_rules: int | None = None,
                  global_labels: tuple[str, ...] | None = None) -> dict[str, Any]:
    """The service's rule file (or PrometheusRule); with `global_labels`, its global set."""
    if global_labels is None:
        groups = rules.service_groups(service)
    else:
        from sloexporter import global_rules

        groups = global_rules.service_groups(service, global_labels)
    groups = _labelled(rules.split_groups(groups, max_rules), rule_labels or {})
    if fmt == "prometheus":
        return {"groups": groups}
    prefix = "sloexporter" if global_labels is None else "sloexporter-global"
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": k8s_name(f"{prefix}-{service.name}"),
            "labels": {**(rule_labels or {}),
                       "app.kubernetes.io/managed-by": "sloexporter",
                       "sloexporter.dev/service": k8s_name(service.name, 63)},
        },
        "spec": {"groups": groups},
    }


def render_rules(service: Service, fmt: str = "prometheus",
                 rule_labels: Mapping[str, str] | None = None, max_rules: int | None = None,
                 global_labels: tuple[str, ...] | None = None) -> str:
    return header([service_source(service)]) + to_yaml(
        rule_document(service, fmt, rule_labels, max_rules, global_labels))


def prepared(services: list[Service], options: Options) -> list[Service]:
    """`services` with the run's external labels; ValueError when one clashes."""
    from sloexporter.clusters import with_external_labels

    return with_external_labels(services, options.external_labels)


def rules_stream(services: list[Service], options: Options) -> str:
    """Every service's rules as one stream (`generate -o -`): one rule file with all the
    groups, or one PrometheusRule per service separated by `---`. With a global set
    asked for, the stream is that set (it goes to another ruler)."""
    services = prepared(services, options)
    if options.alertmanager is not None:
        from sloexporter import alertmanager

        services = alertmanager.dashboard_links(services, options.alertmanager.grafana_url)
    ordered = sorted(services, key=lambda s: s.name)
    head = header(service_source(s) for s in ordered)

    def document(service: Service, fmt: str) -> dict[str, Any]:
        return rule_document(service, fmt, options.rule_labels, options.max_rules_per_group,
                             options.global_labels)

    if options.fmt == "prometheus":
        groups = [g for s in ordered for g in document(s, "prometheus")["groups"]]
        seen: set[str] = set()
        for group in groups:  # Prometheus refuses a file that repeats a group name
            if group["name"] in seen:
                raise ValueError(f"two services give the rule group name {group['name']!r} "
                                 "(service and SLO names joined by '-'); rename one, or "
                                 "write a file per service with -o OUTDIR")
            seen.add(group["name"])
        return head + to_yaml({"groups": groups})
    docs = [to_yaml(document(s, options.fmt)) for s in ordered]
    return head + "---\n".join(docs)


# ---- every artefact ---------------------------------------------------------------------

def artefacts(services: list[Service], options: Options,
              skipped: list[Any] | None = None) -> dict[str, str]:
    """Every output file's text by its path under OUTDIR (POSIX, relative).

    SLOs whose promtool tests were left out are appended to `skipped`."""
    from sloexporter import alertmanager

    settings = options.alertmanager or alertmanager.Settings()
    services = alertmanager.dashboard_links(prepared(services, options), settings.grafana_url)
    def render(chunk: Sequence[Service | None]) -> tuple[dict[str, str], list[Any]]:
        found, left_out = _services_files([s for s in chunk if s is not None], options)
        if None in chunk:  # the run's dashboards and Alertmanager files
            from sloexporter import dashboards  # Grafana's SDK: where it is used, only

            found.update(dashboards.files(services))
            found.update(alertmanager.files(services, settings))
        return found, left_out

    # None stands for the shared files, last; they take about as long as the rules of
    # a third of the services (measured at 200), so a worker takes them beside fewer rules
    items: list[Service | None] = [*sorted(services, key=lambda s: s.name), None]
    weights = [1.0] * len(services) + [len(services) / 3]
    files: dict[str, str] = {}
    for part, left_out in parallel.chunked_map(render, items, weights):
        files.update(part)
        if skipped is not None:
            skipped.extend(left_out)
    return files


def _services_files(services: Sequence[Service], options: Options,
                    ) -> tuple[dict[str, str], list[Any]]:
    """The rule (and test) files of `services`, and the SLOs whose tests were left out."""
    files: dict[str, str] = {}
    skipped: list[Any] = []
    limit = options.max_rules_per_group
    for service in services:
        files[f"rules/{service.name}.yaml"] = render_rules(service, options.fmt,
                                                            options.rule_labels, limit)
        if options.ruler_files:
            files.update(_group_files(f"ruler/{service.name}", service, options, None))
        if options.global_labels is not None:
            from sloexporter import global_rules

            skipped.extend(global_rules.left_out([service]))
            if any(s.sli.ratio is None for s in service.slos):
                files[f"global/{service.name}.yaml"] = render_rules(
                    service, options.fmt, options.rule_labels, limit, options.global_labels)
                if options.ruler_files:
                    files.update(_group_files(f"ruler-global/{service.name}", service,
                                              options, options.global_labels))
        if options.with_tests:
            from sloexporter.testgen import render_tests

            rules_file = f"../rules/{service.name}.yaml"
            if options.fmt != "prometheus":
                # promtool reads plain rule files only; tests get a plain copy beside them
                rules_file = f"{service.name}.rules.yaml"
            text, left_out = render_tests(service, rules_file)
            skipped.extend(left_out)
            if text is None:
                continue  # no SLO of the service has a test
            if options.fmt != "prometheus":
                files[f"tests/{rules_file}"] = render_rules(service, "prometheus",
                                                            options.rule_labels, limit)
            files[f"tests/{service.name}.test.yaml"] = text
    return files, skipped


def _group_files(folder: str, service: Service, options: Options,
                 global_labels: tuple[str, ...] | None) -> dict[str, str]:
    """One file per rule group: what a ruler's API takes as one call's body."""
    document = rule_document(service, "prometheus", options.rule_labels,
                             options.max_rules_per_group, global_labels)
    head = header([service_source(service)])
    return {f"{folder}/{group['name']}.yaml": head + to_yaml(group)
            for group in document["groups"]}


# ---- writing: all or nothing ------------------------------------------------------------

def _digest(text: bytes) -> str:
    return hashlib.sha256(text).hexdigest()


def _inside(outdir: Path, rel: str) -> Path | None:
    """outdir/rel when rel is a plain relative path that stays inside outdir, else None."""
    pure = PurePosixPath(rel)
    if pure.is_absolute() or not pure.parts or any(p in ("", ".", "..") for p in pure.parts):
        return None
    return outdir.joinpath(*pure.parts)


def _read_manifest(outdir: Path) -> dict[str, str]:
    """The files an earlier run wrote, by path, with their digests ({} when unknown)."""
    try:
        data = json.loads((outdir / MANIFEST).read_text(encoding="utf-8"))
        files = data["files"]
        return {k: v for k, v in files.items() if isinstance(k, str) and isinstance(v, str)}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}  # absent or damaged: nothing is known to be ours, so nothing is removed


@contextlib.contextmanager
def _locked(outdir: Path) -> Iterator[None]:
    """One `generate` at a time per OUTDIR."""
    import fcntl

    with open(outdir / _LOCK, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def write_tree(outdir: Path, files: Mapping[str, str]) -> tuple[list[Path], list[str]]:
    """Put `files` under `outdir` all at once, or leave it as it was.

    The files are written to a staging folder inside `outdir` (the same filesystem), then
    renamed into place; should a rename fail, the ones already done are rolled back. Files
    that the previous run wrote (per the manifest) and this run does not are removed,
    unless they changed since; files this tool never wrote are never touched. Returns the
    files written and one note per stale file kept. Raises OutputError on a path problem.
    """
    if outdir.exists() and not outdir.is_dir():
        raise OutputError(f"{outdir} exists and is not a folder")
    try:
        outdir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create {outdir}: {exc.strerror or exc}") from exc
    targets = {}
    for rel in sorted(files):
        path = _inside(outdir, rel)
        assert path is not None, rel  # writers name their files; never user input
        targets[rel] = path
    try:
        with _locked(outdir):
            return _write_locked(outdir, files, targets)
    except OSError as exc:
        raise OutputError(f"cannot write to {outdir}: {exc}") from exc


def _write_locked(outdir: Path, files: Mapping[str, str],
                  targets: dict[str, Path]) -> tuple[list[Path], list[str]]:
    for leftover in outdir.glob(_STAGING + "*"):  # a run that was killed half-way
        shutil.rmtree(leftover, ignore_errors=True)
    for rel, path in targets.items():  # a folder where a file goes: fail before any change
        for parent in [path, *path.parents]:
            if parent == outdir:
                break
            if parent.exists() and (parent.is_dir() if parent == path else not parent.is_dir()):
                raise OutputError(f"{parent} is in the way of {rel}")
    previous = _read_manifest(outdir)
    staging = Path(tempfile.mkdtemp(prefix=_STAGING, dir=outdir))
    try:
        def stage(rels: Sequence[str]) -> dict[str, str]:
            done = {}
            for rel in rels:
                data = files[rel].encode("utf-8")
                staged = staging / "new" / rel
                staged.parent.mkdir(parents=True, exist_ok=True)
                staged.write_bytes(data)
                done[rel] = _digest(data)
            return done

        digests: dict[str, str] = {}
        names = list(files)  # weighed by size, plus a file's creation
        for part in parallel.chunked_map(stage, names, [len(files[n]) + 4096 for n in names]):
            digests.update(part)
        manifest = json.dumps({"generator": "sloexporter generate",
                               "files": dict(sorted(digests.items()))}, indent=1) + "\n"
        (staging / MANIFEST).write_text(manifest, encoding="utf-8")
        _swap_in(staging, targets)
        notes = _remove_stale(outdir, previous, set(files))
        os.replace(staging / MANIFEST, outdir / MANIFEST)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return list(targets.values()), notes


def _swap_in(staging: Path, targets: dict[str, Path]) -> None:
    """Rename every staged file into place; on a failure, put back what was there."""
    done: list[tuple[Path, Path | None]] = []
    try:
        for rel, path in targets.items():
            backup = None
            if path.exists():
                backup = staging / "old" / rel
                backup.parent.mkdir(parents=True, exist_ok=True)
                os.replace(path, backup)
            done.append((path, backup))
            path.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging / "new" / rel, path)
    except OSError:
        for path, backup in reversed(done):
            with contextlib.suppress(OSError):
                if backup is not None:
                    os.replace(backup, path)
                else:
                    path.unlink(missing_ok=True)
        raise


def _remove_stale(outdir: Path, previous: dict[str, str], current: set[str]) -> list[str]:
    notes = []
    for rel in sorted(set(previous) - current):
        path = _inside(outdir, rel)
        if path is None or path.is_symlink() or not path.is_file():
            continue
        if _digest(path.read_bytes()) != previous[rel]:
            notes.append(f"kept {path}: an earlier run wrote it, but it changed since")
            continue
        path.unlink()
        for parent in path.parents:  # folders this tool made and left empty
            if parent == outdir or any(parent.iterdir()):
                break
            parent.rmdir()
    return notes


def write_all(services: list[Service], outdir: Path, fmt: str = "prometheus",
              with_tests: bool = False, options: Options | None = None,
              skipped: list[Any] | None = None) -> list[Path]:
    """Render and write every artefact for `services` under `outdir`; the files written.

    With tests, the SLOs whose tests were left out are appended to `skipped`
    (`sloexporter.testgen.Skipped`).
    """
    options = options or Options(fmt=fmt, with_tests=with_tests)
    written, _ = write_tree(outdir, artefacts(services, options, skipped))
    return written
