"""`serve --controller`: ServiceLevels objects in the cluster become PrometheusRules.

Each `sloexporter.dev/v1` ServiceLevels object is run through the same pipeline as
`generate` (`specs.build.load_native` -> `output.rule_document`), and the result is
server-side applied as a `monitoring.coreos.com/v1` PrometheusRule with our own field
manager and an ownerReference to the object, so deleting the object garbage-collects
the rule. The object's status gets a `Ready` condition (reason `Generated`,
`InvalidSpec` or `ApplyFailed`; errors as `path: message`), `observedGeneration` and the
names of what was applied; a Kubernetes Event is written when the outcome changes.

Rules that protect working alerts:
- an invalid spec never touches the rule: the last good one stays in place;
- applying is idempotent (server-side apply of the same object is a no-op), so a
  re-list after a watch gap and the periodic resync re-apply everything safely;
- only the leader (a coordination.k8s.io/v1 Lease, `sloexporter.leader`) writes; every
  replica keeps watching, so a new leader starts warm.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from sloexporter import crd, names
from sloexporter.exposition import family_header, sample_line
from sloexporter.sources.informer import Informer, Resource, SelfMetrics, WatchSettings

log = logging.getLogger(__name__)

SERVICELEVELS = Resource(crd.GROUP, crd.VERSION, crd.PLURAL, crd.KIND)
#: the peers' own resources, watched when asked (--controller-sloth, --controller-pyrra);
#: their status belongs to their own controllers, so we report with Events only
SLOTH = Resource("sloth.slok.dev", "v1", "prometheusservicelevels", "PrometheusServiceLevel")
PYRRA = Resource("pyrra.dev", "v1alpha1", "servicelevelobjectives", "ServiceLevelObjective")
RULE_PREFIX = {SLOTH.kind: "sloexporter-sloth-", PYRRA.kind: "sloexporter-pyrra-"}
RULE_API = "monitoring.coreos.com/v1"
FIELD_MANAGER = "sloexporter-controller"
#: longest a status or event message may be (the apiserver's own limit is 32 KiB)
MAX_MESSAGE = 8000
#: the apiserver refuses a ConfigMap whose data is over 1 MiB (keys and values together)
CONFIGMAP_LIMIT = 1024 * 1024
#: etcd's default request limit is 1.5 MiB; a rule this big is refused before we send it
RULE_LIMIT = 1536 * 1024 - 64 * 1024
#: the label kube-prometheus-stack's Grafana sidecar looks for (`--controller-dashboards`)
DASHBOARD_LABEL = {"grafana_dashboard": "1"}
#: SIGTERM: how long releasing the Lease may take (serve exits within 2 s)
RELEASE_TIMEOUT = 0.4
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

RECONCILES = names.CONTROLLER_RECONCILES
RECONCILE_DURATION = names.CONTROLLER_RECONCILE_DURATION
LEADER = names.CONTROLLER_LEADER
RESOURCES = names.CONTROLLER_RESOURCES


@dataclass(frozen=True)
class ControllerSettings:
    #: watch and write only these namespaces; empty: every namespace
    namespaces: tuple[str, ...] = ()
    #: labels on each PrometheusRule and its rules (kube-prometheus-stack's ruleSelector)
    rule_labels: dict[str, str] = field(default_factory=dict)
    #: every object is re-applied this often, repairing drift (a rule deleted by hand)
    resync_seconds: float = 300.0
    workers: int = 4
    #: also reconcile Sloth PrometheusServiceLevel and Pyrra ServiceLevelObjective objects
    sloth: bool = False
    pyrra: bool = False
    request_timeout: float = 30.0
    #: also apply each object's Grafana dashboards as a ConfigMap with these labels
    dashboards: bool = False
    dashboard_labels: dict[str, str] = field(default_factory=lambda: dict(DASHBOARD_LABEL))
    #: a failed reconcile is retried after this, doubling per failure up to the resync
    retry_base: float = 1.0
    leader_election: bool = True
    lease_name: str = "sloexporter-controller"
    #: where the Lease lives; default: the pod's namespace, else `default`
    lease_namespace: str | None = None
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    identity: str = ""


# ---- the pipeline: spec -> rule, or errors ------------------------------------------

@dataclass(frozen=True)
class Outcome:
    rule: dict[str, Any] | None
    errors: list[str]
    slos: int = 0
    #: the dashboards ConfigMap, when asked for and within the ConfigMap size limit
    configmap: dict[str, Any] | None = None
    #: why what was built cannot be applied (too large), though the spec is valid
    too_large: list[str] = field(default_factory=list)
    rule_fits: bool = True


def build(obj: dict[str, Any], rule_labels: dict[str, str],
          dashboard_labels: dict[str, str] | None = None) -> Outcome:
    """The PrometheusRule for a ServiceLevels object, exactly as `generate --format
    prometheus-operator` writes it, or every validation error as `spec.path: message`;
    with `dashboard_labels`, also its dashboards as a ConfigMap with those labels."""
    from sloexporter.output import rule_document
    from sloexporter.specs.build import load_native
    from sloexporter.specs.errors import Document, SpecErrors

    meta = obj.get("metadata") or {}
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return Outcome(None, ["spec: must be an object"])
    kind = obj.get("kind", crd.KIND)
    native = kind == crd.KIND
    data = {"apiVersion": "sloexporter.dev/v1", "kind": "ServiceLevels", **spec} if native \
        else obj
    doc = Document(f"{meta.get('namespace')}/{meta.get('name')}", data)
    try:
        if native:
            services = load_native(doc, [doc])
        else:
            from sloexporter.specs import _detect

            fmt = _detect(doc)
            if fmt is None or fmt.name not in ("sloth", "pyrra"):
                return Outcome(None, [f"not a {kind} this controller reads"])
            services = fmt.load(doc, [doc])
            if len(services) != 1:
                return Outcome(None, [f"spec: gives {len(services)} services, not one"])
    except SpecErrors as exc:
        return Outcome(None, [f"spec.{e.path}: {e.message}" if e.path else f"spec: {e.message}"
                              for e in sorted(exc.errors, key=lambda e: (e.path, e.message))])
    except Exception as exc:  # noqa: BLE001 - a spec must never stop the controller
        return Outcome(None, [f"spec: cannot be processed: {type(exc).__name__}: {exc}"])
    service = services[0]
    rule = rule_document(service, "prometheus-operator", rule_labels)
    if not native:
        from sloexporter.render import k8s_name

        # one object of the peers' kinds is not one service: name the rule by the object
        rule["metadata"]["name"] = k8s_name(RULE_PREFIX[kind] + str(meta.get("name")))
    owner = {"apiVersion": obj.get("apiVersion", SERVICELEVELS.api_version), "kind": kind,
             "name": meta.get("name"), "uid": meta.get("uid"), "controller": True,
             "blockOwnerDeletion": True}
    rule["metadata"] = {**rule["metadata"], "namespace": meta.get("namespace"),
                        "ownerReferences": [owner]}
    too_large = []
    size = len(json.dumps(rule, separators=(",", ":")))
    size_ok = size <= RULE_LIMIT
    if not size_ok:
        too_large.append(f"PrometheusRule {rule['metadata']['name']} would be {size} bytes, "
                         f"over the {RULE_LIMIT} the API server stores: split the SLOs "
                         "over several objects")
    configmap = None
    if dashboard_labels is not None:
        suffix = "-dashboards"
        configmap = dashboard_configmap(service, rule["metadata"]["name"][:253 - len(suffix)]
                                        .rstrip("-") + suffix,
                                        str(meta.get("namespace")), owner, dashboard_labels)
        size = sum(len(k) + len(v.encode()) for k, v in configmap["data"].items())
        if size > CONFIGMAP_LIMIT:
            too_large.append(f"ConfigMap {configmap['metadata']['name']}: the dashboards are "
                             f"{size} bytes, over the ConfigMap limit of {CONFIGMAP_LIMIT}")
            configmap = None
    return Outcome(rule, [], len(service.slos), configmap, too_large,
                   rule_fits=size_ok)


def dashboard_configmap(service: Any, name: str, namespace: str, owner: dict[str, Any],
                        labels: dict[str, str]) -> dict[str, Any]:
    """The dashboards `generate` writes for this one service (SLO overview, SLO detail and,
    when its SLIs read request metrics, golden signals) as one ConfigMap for Grafana's
    sidecar. The JSON is generate's except each dashboard's uid, title and links between
    them, which name the object, so many objects' dashboards do not replace each other
    in Grafana (same uid) or in the sidecar's folder (same file name)."""
    import hashlib

    from sloexporter import dashboards
    from sloexporter.dashboards.common import DETAIL, GOLDEN, OVERVIEW
    from sloexporter.dashboards.golden import instrumented
    from sloexporter.render import to_json

    built = dashboards.build_all([service])
    metas = [OVERVIEW, DETAIL] + ([GOLDEN] if instrumented([service]) else [])
    suffix = hashlib.sha256(f"{namespace}/{service.name}".encode()).hexdigest()[:8]
    uids = {m.uid: f"{m.uid}-{suffix}"[:40] for m in metas}
    links = re.compile("/d/(" + "|".join(re.escape(u) for u in uids) + r")(?![-\w])")
    data = {}
    for meta in metas:
        dash = dict(built[meta.file])
        dash["uid"] = uids[meta.uid]
        dash["title"] = f"{dash.get('title')} / {namespace}/{service.name}"
        text = links.sub(lambda m: "/d/" + uids[m.group(1)], to_json(dash))
        data[re.sub(r"[^-._a-zA-Z0-9]+", "-", f"{namespace}-{service.name}-{meta.file}.json")
             ] = text
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": namespace, "labels": dict(labels),
                         "ownerReferences": [owner]},
            "data": data}


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def ready_condition(status: str, reason: str, message: str, generation: int,
                    previous: dict[str, Any] | None) -> dict[str, Any]:
    """A Ready condition; its lastTransitionTime moves only when the status changes."""
    since = previous.get("lastTransitionTime") if previous and \
        previous.get("status") == status else None
    return {"type": "Ready", "status": status, "reason": reason,
            "message": message[:MAX_MESSAGE], "observedGeneration": generation,
            "lastTransitionTime": since or _now()}


# ---- talking to the API server -------------------------------------------------------

class APIError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message


class Client:
    """JSON requests with a timeout on each; errors as APIError with the server's message."""

    def __init__(self, api: Any, timeout: float) -> None:
        self.api = api
        self.timeout = timeout

    async def request(self, method: str, path: str, body: Any = None,
                      query: list[tuple[str, str]] | None = None,
                      content_type: str = "application/json", ok: tuple[int, ...] = (200, 201)
                      ) -> Any:
        resp = await self.api.call_api(
            path, method, query_params=query or [], body=body,
            header_params={"Content-Type": content_type, "Accept": "application/json"},
            auth_settings=["BearerToken"], _preload_content=False,
            _request_timeout=aiohttp.ClientTimeout(total=self.timeout))
        try:
            async with asyncio.timeout(self.timeout):
                raw = await resp.read()
        finally:
            resp.release()
        try:
            data = json.loads(raw) if raw else None
        except ValueError:
            data = None
        if resp.status not in ok:
            message = data.get("message") if isinstance(data, dict) else None
            raise APIError(resp.status, str(message or raw[:300].decode("utf-8", "replace")))
        return data

    async def apply(self, path: str, obj: dict[str, Any]) -> Any:
        """Server-side apply as our field manager (force: we own what we generate)."""
        return await self.request("PATCH", path, obj,
                                  query=[("fieldManager", FIELD_MANAGER), ("force", "true")],
                                  content_type="application/apply-patch+yaml")


def _path(item: dict[str, Any]) -> str:
    """The API path of a PrometheusRule or ConfigMap we generate."""
    meta = item["metadata"]
    if item["kind"] == "ConfigMap":
        return f"/api/v1/namespaces/{meta['namespace']}/configmaps/{meta['name']}"
    return rule_path(meta["namespace"], meta["name"])


def _plural(item: dict[str, Any]) -> str:
    return "configmaps" if item["kind"] == "ConfigMap" else "prometheusrules"


def _describe(item: dict[str, Any]) -> str:
    return f"{item['kind']} {item['metadata']['namespace']}/{item['metadata']['name']}"


def _ref(item: dict[str, Any]) -> dict[str, str]:
    """How status.generated names an object."""
    return {"apiVersion": item["apiVersion"], "kind": item["kind"],
            "name": item["metadata"]["name"]}


def _merged(applied: list[dict[str, Any]], before: list[dict[str, Any]]
            ) -> list[dict[str, Any]]:
    """status.generated after a partial apply: what was applied now, then what was made
    before under other names (still in place)."""
    now = {(a["kind"], a["name"]) for a in applied}
    return applied + [g for g in before if (g.get("kind"), g.get("name")) not in now]


def _kept(generated: list[dict[str, Any]]) -> str:
    """What stays in place after a failed reconcile, for the message."""
    rules = [g["name"] for g in generated if g.get("kind") == "PrometheusRule" and g.get("name")]
    maps = [g["name"] for g in generated if g.get("kind") == "ConfigMap" and g.get("name")]
    if not rules and not maps:
        return ""
    kept = " and ".join([f"rule {n}" for n in rules] + [f"dashboards {n}" for n in maps])
    return f" (the last good {kept} {'is' if len(rules) + len(maps) == 1 else 'are'} kept)"


def rule_path(namespace: str, name: str | None = None) -> str:
    base = f"/apis/{RULE_API}/namespaces/{namespace}/prometheusrules"
    return f"{base}/{name}" if name else base


def object_path(namespace: str, name: str) -> str:
    return f"{SERVICELEVELS.path(namespace)}/{name}"


# ---- self-metrics --------------------------------------------------------------------

@dataclass
class ControllerMetrics:
    reconciles: dict[str, int] = field(default_factory=dict)
    buckets: list[int] = field(default_factory=lambda: [0] * len(DURATION_BUCKETS))
    duration_sum: float = 0.0
    duration_count: int = 0

    def observe(self, result: str, seconds: float) -> None:
        self.reconciles[result] = self.reconciles.get(result, 0) + 1
        self.duration_sum += seconds
        self.duration_count += 1
        for i, bound in enumerate(DURATION_BUCKETS):
            if seconds <= bound:
                self.buckets[i] += 1


# ---- the controller ------------------------------------------------------------------

class Controller:
    """Watches ServiceLevels (informer handler) and reconciles them (worker tasks)."""

    def __init__(self, api: Any, settings: ControllerSettings,
                 metrics: SelfMetrics | None = None,
                 watch: Callable[[str | None], WatchSettings] | None = None) -> None:
        self.settings = settings
        self.client = Client(api, settings.request_timeout)
        self.api = api
        self.watch_metrics = metrics or SelfMetrics()
        self.metrics = ControllerMetrics()
        self._watch = watch or (lambda ns: WatchSettings(namespace=ns))
        self.objects: dict[str, dict[str, Any]] = {}  # key -> the latest object seen
        self.conditions: dict[str, str] = {}  # key -> Ready status we last wrote
        self.queue: asyncio.Queue[str] = asyncio.Queue()
        self._queued: set[str] = set()
        self._busy: set[str] = set()
        self.informers: list[Informer] = []
        self._done: dict[str, Any] = {}  # peers' kinds: key -> generation reconciled
        self._reported: dict[str, tuple[str, str, str]] = {}  # peers' kinds: last event
        self._built: dict[str, tuple[tuple[Any, ...], Outcome]] = {}  # key -> last build
        self._failures: dict[str, int] = {}  # key -> failed reconciles in a row (backoff)
        self.leader: LeaderElector | None = None
        self.is_leader = not settings.leader_election

    # --- informer handler ---

    def key_of(self, obj: dict[str, Any]) -> str:
        meta = obj["metadata"]
        kind = obj.get("kind", crd.KIND)
        prefix = "" if kind == crd.KIND else f"{kind}:"
        return f"{prefix}{meta['namespace']}/{meta['name']}"

    def apply(self, resource: Resource, event: str, obj: dict[str, Any]) -> None:
        obj.setdefault("kind", resource.kind)
        obj.setdefault("apiVersion", resource.api_version)
        key = self.key_of(obj)
        if resource != SERVICELEVELS:
            # a peer's kind: its status is not ours, so our memory says what was done
            if event == "DELETED":
                self._forget(key)
                return
            self.objects[key] = obj
            if event == "ADDED" or self._done.get(key) != obj["metadata"].get("generation"):
                self.enqueue(key)
            return
        if event == "DELETED":
            self._forget(key)
            return  # the rule goes with it: ownerReferences and the garbage collector
        self.objects[key] = obj
        status = obj.get("status") or {}
        ready = _ready(status)
        if ready is not None:
            self.conditions[key] = ready.get("status", "Unknown")
        # ADDED (a first list, a re-list after a gap): re-apply, which is idempotent.
        # MODIFIED: only a new generation; our own status writes do not change it.
        if event == "ADDED" or status.get("observedGeneration") != \
                obj["metadata"].get("generation") or ready is None:
            self.enqueue(key)

    def prune(self, resource: Resource, scope: str, seen: set[str]) -> None:
        """After a re-list of `resource` in `scope` (a namespace, or "" for all): forget
        the objects of that kind there that the list no longer has."""
        def mine(obj: dict[str, Any]) -> bool:
            return obj.get("kind") == resource.kind and (
                not scope or obj["metadata"].get("namespace") == scope)

        for key in [k for k, o in self.objects.items() if k not in seen and mine(o)]:
            self._forget(key)

    def _forget(self, key: str) -> None:
        """Drop what we remember of an object that is gone."""
        for memory in (self.objects, self.conditions, self._done, self._built,
                       self._reported, self._failures):
            memory.pop(key, None)

    def enqueue(self, key: str) -> None:
        if key not in self._queued:
            self._queued.add(key)
            self.queue.put_nowait(key)

    # --- running ---

    async def run(self) -> None:
        from sloexporter.aio import supervise

        tasks = []
        kinds = [SERVICELEVELS] + [r for r, on in ((SLOTH, self.settings.sloth),
                                                   (PYRRA, self.settings.pyrra)) if on]
        for resource in kinds:
            for ns in self.settings.namespaces or (None,):
                informer = Informer(self.api, resource, self, "controller",
                                    self.watch_metrics, self._watch(ns))
                self.informers.append(informer)
                tasks.append(supervise(f"watch {informer.where}", informer.run))
        if self.settings.leader_election:
            self.leader = LeaderElector(self.client, self.settings, self._on_leading)
            tasks.append(supervise("leader election", self.leader.run))
        tasks += [supervise(f"reconcile worker {i}", self._worker)
                  for i in range(max(1, self.settings.workers))]
        tasks.append(supervise("resync", self._resync))
        running = [asyncio.create_task(t) for t in tasks]
        try:
            await asyncio.gather(*running)
        finally:
            # on the way out (SIGTERM): stop writing, let the others stop, then give the
            # lease up while the API client is still open (a cancelled gather returns at
            # once, without waiting for its children)
            self.is_leader = False
            for task in running:
                task.cancel()
            await asyncio.wait(running, timeout=0.1)
            if self.leader is not None and self.leader.held:
                await self.leader.release_on_exit()

    def _on_leading(self, leading: bool) -> None:
        self.is_leader = leading
        if leading:
            for key in sorted(self.objects):  # the new leader applies everything once
                self.enqueue(key)

    async def _resync(self) -> None:
        while True:
            await asyncio.sleep(self.settings.resync_seconds)
            for key in sorted(self.objects):
                self.enqueue(key)

    def listed(self) -> bool:
        return all(i.listed.is_set() for i in self.informers) and bool(self.informers)

    def lease_problems(self) -> list[str]:
        """Why this replica cannot take part in leader election, once that has lasted
        longer than a leader may go without renewing; [] when it can (leading or not)."""
        return self.leader.problems() if self.leader is not None else []

    async def _worker(self) -> None:
        while True:
            key = await self.queue.get()
            self._queued.discard(key)
            if key in self._busy:  # another worker has it: look again once it is done
                await asyncio.sleep(0.05)
                self.enqueue(key)
                continue
            obj = self.objects.get(key)
            if obj is None or not self.is_leader:
                continue  # deleted meanwhile, or not ours to write (the leader does it)
            self._busy.add(key)
            started = time.monotonic()
            try:
                result = await self.reconcile(obj)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - retried with backoff below
                result = "error"
                log.warning("reconcile %s failed: %s", key, str(exc)[:300])
            finally:
                self._busy.discard(key)
            self._retry_later(key, result)
            self.metrics.observe(result, time.monotonic() - started)

    def _retry_later(self, key: str, result: str) -> None:
        """A reconcile that could not apply (a 5xx, a missing CRD, a refusal) is tried
        again with exponential backoff, not only at the next resync: the CRD or the RBAC
        often arrive in the same ArgoCD sync as the objects."""
        from sloexporter.sources.informer import backoff_delay

        if result not in ("error", "failed") or key not in self.objects:
            self._failures.pop(key, None)
            return
        failures = self._failures[key] = self._failures.get(key, 0) + 1
        delay = backoff_delay(failures, self.settings.retry_base,
                              max(self.settings.retry_base, min(300.0,
                                                                self.settings.resync_seconds)))
        asyncio.get_running_loop().call_later(delay, self.enqueue, key)

    async def reconcile(self, obj: dict[str, Any]) -> str:
        """Apply the rule (and dashboards) for `obj` and write its status; the result
        label."""
        meta = obj["metadata"]
        ns, generation = meta["namespace"], meta.get("generation", 0)
        status = obj.get("status") or {}
        previous = _ready(status)
        outcome = await self._build(obj)
        generated = [g for g in status.get("generated") or () if isinstance(g, dict)]
        slos = status.get("slos")

        async def report(result: str, state: str, reason: str, message: str) -> str:
            condition = ready_condition(state, reason, message, generation, previous)
            await self._write_status(obj, condition, generated, slos, previous)
            return result

        if outcome.errors:
            return await report("invalid", "False", "InvalidSpec",
                                "; ".join(outcome.errors) + _kept(generated))
        assert outcome.rule is not None
        wanted = [outcome.rule] + ([outcome.configmap] if outcome.configmap else [])
        if not outcome.rule_fits:
            wanted = []  # the rule itself is too large: nothing is applied
        applied: list[dict[str, Any]] = []
        # the rule first: when the dashboards cannot be written, the alerts still are
        for item in wanted:
            try:
                owner = await self._other_owner(item, meta.get("uid"))
                if owner is not None:
                    # two objects for one service: the first keeps what it made, this one
                    # says why
                    generated[:] = _merged(applied, generated)
                    return await report("failed", "False", "Conflict", f"{_describe(item)} "
                                        f"belongs to {owner}; give this spec another "
                                        "service name")
                await self.client.apply(_path(item), item)
            except APIError as exc:
                if exc.status == 413 or (exc.status == 500 and "too large" in exc.message):
                    # near etcd's limit our estimate can be short: the server has the say
                    generated[:] = _merged(applied, generated)
                    return await report("invalid", "False", "TooLarge",
                                        f"{_describe(item)}: {exc.message}: split the SLOs "
                                        "over several objects" + _kept(generated))
                if exc.status not in (401, 403, 404, 409, 422):
                    raise  # a 5xx or a throttle: retried
                # a refusal the next try would likely get too: say so on the object
                # (retried with backoff: the CRD or the RBAC may come later)
                message = f"{_describe(item)}: {exc.message}"
                if exc.status == 404 and item["kind"] != "ConfigMap":
                    message = (f"{_describe(item)} cannot be applied: the API server does "
                               f"not serve {item['apiVersion']} {_plural(item)} (is its "
                               f"CRD installed?); retrying")
                generated[:] = _merged(applied, generated)  # what did apply is listed
                return await report("failed", "False", "ApplyFailed",
                                    message + _kept(generated))
            applied.append(_ref(item))
        if outcome.too_large:
            # keep what was made before in place and listed; say why it is not updated
            generated[:] = _merged(applied, [g for g in generated
                                             if g.get("kind") in self._kinds()])
            return await report("invalid", "False", "TooLarge",
                                "; ".join(outcome.too_large) + _kept(generated))
        await self._remove_stale(ns, meta.get("uid"), generated, applied)
        generated, slos = applied, outcome.slos
        what = " and ".join(f"{g['kind']} {g['name']}" for g in applied)
        return await report("ready", "True", "Generated", f"{what} with {slos} SLOs")

    def _kinds(self) -> tuple[str, ...]:
        """The kinds this controller writes, as configured now."""
        return ("PrometheusRule", "ConfigMap") if self.settings.dashboards else \
            ("PrometheusRule",)

    async def _build(self, obj: dict[str, Any]) -> Outcome:
        """build(), run once per version of an object, off the event loop (a spec with
        thousands of SLOs takes seconds): the resync and a re-list re-apply the output of
        an unchanged object without running the whole pipeline again."""
        from sloexporter.aio import in_thread

        meta = obj["metadata"]
        # ServiceLevels has a status subresource, and build() reads only its spec, so its
        # generation says when the output can change; the peers' kinds are read whole
        # (Pyrra's labels are in its metadata), so any change counts.
        version = (meta.get("uid"), meta.get("generation") if obj.get("kind") == crd.KIND
                   else meta.get("resourceVersion"))
        key = self.key_of(obj)
        cached = self._built.get(key)
        if cached is not None and cached[0] == version and None not in version:
            return cached[1]
        labels = self.settings.dashboard_labels if self.settings.dashboards else None
        outcome = await in_thread(build, obj, self.settings.rule_labels, labels)
        if key in self.objects:  # not deleted while it was built
            self._built[key] = (version, outcome)
        return outcome

    async def _other_owner(self, item: dict[str, Any], uid: str | None) -> str | None:
        """The controller of the existing object `item` names when it is not `uid`."""
        try:
            found = await self.client.request("GET", _path(item))
        except APIError as exc:
            if exc.status == 404:
                return None
            raise
        for ref in (found.get("metadata") or {}).get("ownerReferences") or ():
            if ref.get("controller") and ref.get("uid") != uid:
                return f"{ref.get('kind')} {item['metadata']['namespace']}/{ref.get('name')}"
        return None

    async def _remove_stale(self, ns: str, uid: str | None, generated: list[dict[str, Any]],
                            applied: list[dict[str, Any]]) -> None:
        """What this object made under an old name (its service was renamed) goes; only
        kinds this controller writes now (it may have lost the RBAC for the others)."""
        current = {(a["kind"], a["name"]) for a in applied}
        for item in generated:
            name, kind = item.get("name"), item.get("kind")
            if kind not in self._kinds() or not name or (kind, name) in current:
                continue
            path = _path({"apiVersion": item.get("apiVersion", RULE_API), "kind": kind,
                          "metadata": {"namespace": ns, "name": name}})
            try:
                old = await self.client.request("GET", path)
            except APIError as exc:
                if exc.status == 404:
                    continue
                raise
            owners = (old.get("metadata") or {}).get("ownerReferences") or []
            if any(o.get("uid") == uid for o in owners):
                await self.client.request(
                    "DELETE", path, {"preconditions": {"uid": old["metadata"]["uid"]}},
                    ok=(200, 202, 404, 409))

    async def _write_status(self, obj: dict[str, Any], condition: dict[str, Any],
                            generated: list[dict[str, Any]], slos: int | None,
                            previous: dict[str, Any] | None) -> None:
        meta = obj["metadata"]
        ns, name = meta["namespace"], meta["name"]
        if obj.get("kind", crd.KIND) != crd.KIND:
            key = self.key_of(obj)
            if key not in self.objects:
                return  # deleted while it was reconciled: nothing to report on
            self._done[key] = meta.get("generation")
            self.conditions[key] = condition["status"]
            said = (condition["status"], condition["reason"], condition["message"])
            if self._reported.get(key) != said:
                self._reported[key] = said
                await self._event(obj, condition)
            return
        status: dict[str, Any] = {"observedGeneration": meta.get("generation", 0),
                                  "conditions": [condition], "generated": generated}
        if slos is not None:
            status["slos"] = slos
        old = obj.get("status") or {}
        unchanged = previous is not None and all(
            previous.get(k) == condition[k] for k in ("status", "reason", "message")) and \
            old.get("observedGeneration") == status["observedGeneration"] and \
            old.get("generated", []) == generated
        if unchanged:
            return  # a resync or re-list of an object already reported: no write, no event
        try:
            await self.client.apply(object_path(ns, name) + "/status", {
                "apiVersion": SERVICELEVELS.api_version, "kind": crd.KIND,
                "metadata": {"name": name, "namespace": ns}, "status": status})
        except APIError as exc:
            if exc.status == 404:
                return  # deleted meanwhile
            raise
        if f"{ns}/{name}" in self.objects:  # not deleted while it was reconciled
            self.conditions[f"{ns}/{name}"] = condition["status"]
        await self._event(obj, condition)

    async def _event(self, obj: dict[str, Any], condition: dict[str, Any]) -> None:
        meta = obj["metadata"]
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        event = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {"apiVersion": obj.get("apiVersion", SERVICELEVELS.api_version),
                               "kind": obj.get("kind", crd.KIND),
                               "name": meta["name"], "namespace": meta["namespace"],
                               "uid": meta.get("uid"),
                               "resourceVersion": meta.get("resourceVersion")},
            "reason": condition["reason"], "message": condition["message"][:1000],
            "type": "Normal" if condition["status"] == "True" else "Warning",
            "source": {"component": FIELD_MANAGER},
            "reportingComponent": FIELD_MANAGER,
            "reportingInstance": self.settings.identity or FIELD_MANAGER,
            "action": "Reconcile", "eventTime": now, "firstTimestamp": now[:19] + "Z",
            "lastTimestamp": now[:19] + "Z", "count": 1,
        }
        try:
            await self.client.request("POST", f"/api/v1/namespaces/{meta['namespace']}/events",
                                      event)
        except (APIError, aiohttp.ClientError, TimeoutError) as exc:
            # an event is a courtesy: the status already says it
            log.info("event for %s/%s not written: %s", meta["namespace"], meta["name"], exc)

    # --- exposition ---

    def render(self) -> str:
        m = self.metrics
        out = [family_header(RECONCILES, "Reconciles of ServiceLevels objects by result "
                             "(ready, invalid, failed, error).", "counter")]
        out += [sample_line(RECONCILES, {"result": r}, m.reconciles.get(r, 0))
                for r in ("ready", "invalid", "failed", "error")]
        out.append(family_header(RECONCILE_DURATION, "Time to reconcile one object.",
                                 "histogram"))
        for bound, count in zip(DURATION_BUCKETS, m.buckets, strict=True):
            out.append(sample_line(RECONCILE_DURATION + "_bucket", {"le": repr(bound)}, count))
        out.append(sample_line(RECONCILE_DURATION + "_bucket", {"le": "+Inf"},
                               m.duration_count))
        out.append(sample_line(RECONCILE_DURATION + "_sum", {}, m.duration_sum))
        out.append(sample_line(RECONCILE_DURATION + "_count", {}, m.duration_count))
        out.append(family_header(LEADER, "1 when this replica is the controller's leader "
                                 "(the one that writes).", "gauge"))
        out.append(sample_line(LEADER, {}, int(self.is_leader)))
        counts = {"True": 0, "False": 0, "Unknown": 0}
        for key in self.objects:
            state = self.conditions.get(key, "Unknown")
            counts[state if state in counts else "Unknown"] += 1
        out.append(family_header(RESOURCES, "ServiceLevels objects watched, by their Ready "
                                 "condition.", "gauge"))
        out += [sample_line(RESOURCES, {"condition": "Ready", "status": s}, n)
                for s, n in counts.items()]
        return "".join(out)


def _ready(status: dict[str, Any]) -> dict[str, Any] | None:
    conditions = status.get("conditions")
    if not isinstance(conditions, list):
        return None
    return next((c for c in conditions if isinstance(c, dict) and c.get("type") == "Ready"),
                None)


# ---- leader election -----------------------------------------------------------------

class LeaderElector:
    """A coordination.k8s.io/v1 Lease, as client-go's leaderelection does it.

    A lease is taken over only when its holder has not renewed it for
    `lease_duration`, measured on our own clock from when we last saw it change (no
    trust in the other replica's clock); updates carry the resourceVersion, so two
    candidates cannot both win. The leader renews every `retry_period` and steps down
    when it could not renew for `renew_deadline`.
    """

    def __init__(self, client: Client, settings: ControllerSettings,
                 on_change: Callable[[bool], None]) -> None:
        import os
        import socket

        self.client = client
        self.settings = settings
        self.on_change = on_change
        # one per elector, not per process: a SIGHUP reload runs a second controller for a
        # moment, which must not believe it holds the old one's lease
        self.identity = settings.identity or \
            f"{socket.gethostname()}_{os.getpid()}_{os.urandom(3).hex()}"
        self.namespace = settings.lease_namespace or _pod_namespace()
        self.leading = False
        self._seen: tuple[Any, ...] | None = None
        self._seen_at = 0.0
        self._renewed_at = 0.0
        self._failing_since: float | None = None
        #: the lease was ours at the last round (released on the way out)
        self.held = False
        self._error = ""

    @property
    def path(self) -> str:
        return (f"/apis/coordination.k8s.io/v1/namespaces/{self.namespace}/leases/"
                f"{self.settings.lease_name}")

    def _set(self, leading: bool) -> None:
        if leading != self.leading:
            self.leading = leading
            log.info("controller leader election: %s (%s, lease %s/%s)",
                     "leading" if leading else "not leading", self.identity, self.namespace,
                     self.settings.lease_name)
            self.on_change(leading)

    def _spec(self, old: dict[str, Any] | None) -> dict[str, Any]:
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        spec = (old or {}).get("spec") or {}
        mine = spec.get("holderIdentity") == self.identity
        return {"holderIdentity": self.identity,
                "leaseDurationSeconds": max(1, round(self.settings.lease_duration)),
                "acquireTime": spec.get("acquireTime") if mine else now, "renewTime": now,
                "leaseTransitions": (spec.get("leaseTransitions") or 0) + (0 if mine or not old
                                                                           else 1)}

    async def try_acquire(self) -> bool:
        """One round: take or renew the lease if we may; whether we hold it now."""
        try:
            lease = await self.client.request("GET", self.path)
        except APIError as exc:
            if exc.status != 404:
                raise
            body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": self.settings.lease_name,
                                 "namespace": self.namespace}, "spec": self._spec(None)}
            try:
                await self.client.request("POST", self.path.rsplit("/", 1)[0], body)
            except APIError as err:
                if err.status == 409:
                    return False  # another replica created it first
                raise
            return True
        spec = lease.get("spec") or {}
        record = (spec.get("holderIdentity"), spec.get("renewTime"),
                  lease["metadata"].get("resourceVersion"))
        now = time.monotonic()
        if record != self._seen:
            self._seen, self._seen_at = record, now
        holder = spec.get("holderIdentity")
        duration = spec.get("leaseDurationSeconds") or self.settings.lease_duration
        if holder and holder != self.identity and now - self._seen_at < duration:
            return False  # held, and renewed within its duration as far as we can see
        lease["spec"] = self._spec(lease)
        try:
            await self.client.request("PUT", self.path, lease)
        except APIError as exc:
            if exc.status == 409:
                return False  # someone else updated it first
            raise
        return True

    def problems(self) -> list[str]:
        if self._failing_since is None or \
                time.monotonic() - self._failing_since <= self.settings.renew_deadline:
            return []
        return [f"lease {self.namespace}/{self.settings.lease_name}: {self._error}"]

    async def release(self) -> None:
        """Give the lease up on the way out (client-go's ReleaseOnCancel), so another
        replica takes over at its next try instead of after the lease duration. Only a
        lease we still hold, and only with its resourceVersion: a lease someone else
        took meanwhile is left alone."""
        lease = await self.client.request("GET", self.path)
        spec = lease.get("spec") or {}
        if spec.get("holderIdentity") != self.identity:
            return
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        lease["spec"] = {"leaseDurationSeconds": 1, "acquireTime": now, "renewTime": now,
                         "leaseTransitions": spec.get("leaseTransitions") or 0}
        await self.client.request("PUT", self.path, lease)
        self.held = False
        log.info("controller leader election: released lease %s/%s", self.namespace,
                 self.settings.lease_name)

    async def release_on_exit(self) -> None:
        try:
            async with asyncio.timeout(RELEASE_TIMEOUT):
                await self.release()
        except asyncio.CancelledError:
            log.warning("controller leader election: lease %s/%s not released: cancelled",
                        self.namespace, self.settings.lease_name)
            raise
        except Exception as exc:  # noqa: BLE001 - it expires by itself anyway
            log.warning("controller leader election: lease %s/%s not released: %s: %s",
                        self.namespace, self.settings.lease_name, type(exc).__name__,
                        str(exc)[:300])

    async def run(self) -> None:
        from sloexporter.sources.informer import backoff_delay

        failures = 0
        try:
            while True:
                try:
                    held = await self.try_acquire()
                    failures, self._failing_since = 0, None
                    self.held = held
                    if held:
                        self._renewed_at = time.monotonic()
                    self._set(held)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - keep trying
                    failures += 1
                    self._error = str(exc)[:300]
                    if self._failing_since is None:
                        self._failing_since = time.monotonic()
                    log.warning("controller leader election: lease %s/%s: %s", self.namespace,
                                self.settings.lease_name, str(exc)[:300])
                    if self.leading and time.monotonic() - self._renewed_at > \
                            self.settings.renew_deadline:
                        self._set(False)  # cannot prove we still hold it: stop writing
                    await asyncio.sleep(backoff_delay(failures, self.settings.retry_period / 2,
                                                      self.settings.retry_period))
                    continue
                await asyncio.sleep(self.settings.retry_period)
        finally:
            if self.leading:
                self.leading = False
                self.on_change(False)  # the controller releases the lease once stopped


def _pod_namespace() -> str:
    try:
        with open("/var/run/secrets/kubernetes.io/serviceaccount/namespace") as fh:
            return fh.read().strip() or "default"
    except OSError:
        return "default"


# ---- serve's options -----------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("controller (opt-in)")
    group.add_argument("--controller", action="store_true",
                       help="also run the controller: every ServiceLevels object "
                            "(sloexporter.dev/v1) becomes a PrometheusRule, with errors in "
                            "its status (see docs/controller.md); needs a cluster")
    group.add_argument("--controller-namespace", action="append", default=[], metavar="NS",
                       help="watch and write ServiceLevels only in NS (repeatable; default: "
                            "every namespace)")
    group.add_argument("--controller-rule-labels", action="append", default=[],
                       metavar="K=V[,K=V]",
                       help="labels on each PrometheusRule and its rules, e.g. "
                            "release=kube-prometheus-stack (repeatable)")
    group.add_argument("--controller-resync", type=float, default=300.0, metavar="SECONDS",
                       help="re-apply every object this often (default: 300)")
    group.add_argument("--controller-sloth", action="store_true",
                       help="also reconcile Sloth PrometheusServiceLevel objects "
                            "(sloth.slok.dev/v1); reported with Events")
    group.add_argument("--controller-pyrra", action="store_true",
                       help="also reconcile Pyrra ServiceLevelObjective objects "
                            "(pyrra.dev/v1alpha1); reported with Events")
    group.add_argument("--controller-dashboards", action="store_true",
                       help="also apply each object's Grafana dashboards (those `generate` "
                            "writes for its service) as a ConfigMap for Grafana's sidecar")
    group.add_argument("--controller-dashboard-label", action="append", default=[],
                       metavar="K=V",
                       help="label on the dashboard ConfigMaps that Grafana's sidecar "
                            "selects (repeatable; default: grafana_dashboard=1)")
    group.add_argument("--no-leader-election", action="store_true",
                       help="write without holding the Lease (a single replica only)")
    group.add_argument("--lease-namespace", metavar="NS",
                       help="namespace of the Lease (default: the pod's namespace)")
    group.add_argument("--lease-name", default="sloexporter-controller", metavar="NAME",
                       help="name of the Lease (default: sloexporter-controller)")
    group.add_argument("--lease-duration", type=float, default=15.0, metavar="SECONDS",
                       help="a leader that has not renewed for this long is replaced "
                            "(default: 15)")


def settings_from_args(args: argparse.Namespace) -> ControllerSettings:
    """ControllerSettings from serve's options; ValueError for a bad value."""
    from sloexporter.output import parse_rule_labels

    labels = parse_rule_labels(list(getattr(args, "controller_rule_labels", []) or []),
                               "prometheus-operator")
    resync = float(args.controller_resync)
    duration = float(args.lease_duration)
    if not 1 <= resync <= 86400:
        raise ValueError("--controller-resync must be between 1 and 86400 seconds")
    if not 2 <= duration <= 3600:
        raise ValueError("--lease-duration must be between 2 and 3600 seconds")
    dashboard_labels = parse_k8s_labels(
        list(getattr(args, "controller_dashboard_label", []) or []),
        "--controller-dashboard-label") or dict(DASHBOARD_LABEL)
    return ControllerSettings(
        namespaces=tuple(dict.fromkeys(args.controller_namespace)), rule_labels=labels,
        dashboards=bool(getattr(args, "controller_dashboards", False)),
        dashboard_labels=dashboard_labels,
        resync_seconds=resync, leader_election=not args.no_leader_election,
        sloth=bool(getattr(args, "controller_sloth", False)),
        pyrra=bool(getattr(args, "controller_pyrra", False)),
        lease_name=args.lease_name, lease_namespace=args.lease_namespace,
        lease_duration=duration, renew_deadline=duration * 2 / 3,
        retry_period=max(0.5, duration / 7.5))


_LABEL_NAME = r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)"
_LABEL_KEY = re.compile(rf"^([a-z0-9]([-a-z0-9.]{{0,251}}[a-z0-9])?/)?{_LABEL_NAME}$")
_LABEL_VALUE = re.compile(rf"^{_LABEL_NAME}?$")


def parse_k8s_labels(items: list[str], option: str) -> dict[str, str]:
    """`K=V[,K=V]` as Kubernetes labels (a key may have a prefix, grafana.com/x=y);
    ValueError naming the option and the offending item."""
    labels: dict[str, str] = {}
    for item in items:
        for pair in filter(None, (p.strip() for p in item.split(","))):
            key, sep, value = pair.partition("=")
            if not sep or not _LABEL_KEY.match(key) or len(key.partition("/")[0]) > 253:
                raise ValueError(f"{option} {pair!r}: expected KEY=VALUE with a Kubernetes "
                                 "label key")
            if not _LABEL_VALUE.match(value):
                raise ValueError(f"{option} {pair!r}: a label value is at most 63 letters, "
                                 "digits, '-', '_' or '.'")
            labels[key] = value
    return labels
