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


def build(obj: dict[str, Any], rule_labels: dict[str, str]) -> Outcome:
    """The PrometheusRule for a ServiceLevels object, exactly as `generate --format
    prometheus-operator` writes it, or every validation error as `spec.path: message`."""
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
    rule["metadata"] = {**rule["metadata"], "namespace": meta.get("namespace"),
                        "ownerReferences": [{
                            "apiVersion": obj.get("apiVersion", SERVICELEVELS.api_version),
                            "kind": kind,
                            "name": meta.get("name"), "uid": meta.get("uid"),
                            "controller": True, "blockOwnerDeletion": True}]}
    return Outcome(rule, [], len(service.slos))


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
        prefix = "" if resource == SERVICELEVELS else f"{resource.kind}:"

        def mine(key: str) -> bool:
            rest = key[len(prefix):] if key.startswith(prefix) else None
            if rest is None or (not prefix and ":" in key.split("/", 1)[0]):
                return False
            return not scope or rest.startswith(scope + "/")

        for key in [k for k in self.objects if k not in seen and mine(k)]:
            self._forget(key)

    def _forget(self, key: str) -> None:
        """Drop what we remember of an object that is gone."""
        for memory in (self.objects, self.conditions, self._done, self._built):
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
        await asyncio.gather(*tasks)

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
                asyncio.get_running_loop().call_later(
                    min(60.0, self.settings.retry_period * 5), self.enqueue, key)
            finally:
                self._busy.discard(key)
            self.metrics.observe(result, time.monotonic() - started)

    async def reconcile(self, obj: dict[str, Any]) -> str:
        """Apply the rule for `obj` and write its status; the result label."""
        meta = obj["metadata"]
        ns, generation = meta["namespace"], meta.get("generation", 0)
        status = obj.get("status") or {}
        previous = _ready(status)
        outcome = self._build(obj)
        generated = status.get("generated") or []
        if outcome.errors:
            message = "; ".join(outcome.errors)
            kept = f" (the last good rule {generated[0]['name']} is kept)" if generated else ""
            result, condition = "invalid", ready_condition(
                "False", "InvalidSpec", message + kept, generation, previous)
            slos = status.get("slos")
        else:
            assert outcome.rule is not None
            rule_name = outcome.rule["metadata"]["name"]
            owner = await self._other_owner(ns, rule_name, meta.get("uid"))
            if owner is not None:
                # two objects for one service: the first keeps its rule, this one says why
                condition = ready_condition(
                    "False", "Conflict", f"PrometheusRule {ns}/{rule_name} belongs to "
                    f"{owner}; give this spec another service name", generation, previous)
                await self._write_status(obj, condition, generated, status.get("slos"),
                                         previous)
                return "failed"
            try:
                await self.client.apply(rule_path(ns, rule_name), outcome.rule)
            except APIError as exc:
                if exc.status in (401, 403, 404, 409, 422):
                    # a refusal the next try would get too: say so on the object
                    result, condition = "failed", ready_condition(
                        "False", "ApplyFailed",
                        f"PrometheusRule {ns}/{rule_name}: {exc.message}", generation,
                        previous)
                    slos = status.get("slos")
                    await self._write_status(obj, condition, generated, slos, previous)
                    return result
                raise  # a 5xx or a throttle: retried
            await self._remove_stale(ns, meta.get("uid"), generated, rule_name)
            generated = [{"apiVersion": RULE_API, "kind": "PrometheusRule", "name": rule_name}]
            slos = outcome.slos
            result, condition = "ready", ready_condition(
                "True", "Generated",
                f"PrometheusRule {rule_name} with {slos} SLOs", generation, previous)
        await self._write_status(obj, condition, generated, slos, previous)
        return result

    def _build(self, obj: dict[str, Any]) -> Outcome:
        """build(), run once per version of an object: the resync and a re-list re-apply
        the rule of an unchanged object without running the whole pipeline again."""
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
        outcome = build(obj, self.settings.rule_labels)
        self._built[key] = (version, outcome)
        return outcome

    async def _other_owner(self, ns: str, name: str, uid: str | None) -> str | None:
        """The controller of an existing rule `name` when it is not the object `uid`."""
        try:
            rule = await self.client.request("GET", rule_path(ns, name))
        except APIError as exc:
            if exc.status == 404:
                return None
            raise
        for ref in (rule.get("metadata") or {}).get("ownerReferences") or ():
            if ref.get("controller") and ref.get("uid") != uid:
                return f"{ref.get('kind')} {ns}/{ref.get('name')}"
        return None

    async def _remove_stale(self, ns: str, uid: str | None, generated: list[dict[str, Any]],
                            current: str) -> None:
        """A rule this object made under an old name (its service was renamed) goes."""
        for item in generated:
            name = item.get("name")
            if item.get("kind") != "PrometheusRule" or not name or name == current:
                continue
            try:
                old = await self.client.request("GET", rule_path(ns, name))
            except APIError as exc:
                if exc.status == 404:
                    continue
                raise
            owners = (old.get("metadata") or {}).get("ownerReferences") or []
            if any(o.get("uid") == uid for o in owners):
                await self.client.request(
                    "DELETE", rule_path(ns, name), {"preconditions": {"uid": old["metadata"]
                                                                       ["uid"]}},
                    ok=(200, 202, 404, 409))

    async def _write_status(self, obj: dict[str, Any], condition: dict[str, Any],
                            generated: list[dict[str, Any]], slos: int | None,
                            previous: dict[str, Any] | None) -> None:
        meta = obj["metadata"]
        ns, name = meta["namespace"], meta["name"]
        if obj.get("kind", crd.KIND) != crd.KIND:
            key = self.key_of(obj)
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
        self.identity = settings.identity or f"{socket.gethostname()}_{os.getpid()}"
        self.namespace = settings.lease_namespace or _pod_namespace()
        self.leading = False
        self._seen: tuple[Any, ...] | None = None
        self._seen_at = 0.0
        self._renewed_at = 0.0

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

    async def run(self) -> None:
        from sloexporter.sources.informer import backoff_delay

        failures = 0
        try:
            while True:
                try:
                    held = await self.try_acquire()
                    failures = 0
                    if held:
                        self._renewed_at = time.monotonic()
                    self._set(held)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - keep trying
                    failures += 1
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
                self.on_change(False)


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
    return ControllerSettings(
        namespaces=tuple(dict.fromkeys(args.controller_namespace)), rule_labels=labels,
        resync_seconds=resync, leader_election=not args.no_leader_election,
        sloth=bool(getattr(args, "controller_sloth", False)),
        pyrra=bool(getattr(args, "controller_pyrra", False)),
        lease_name=args.lease_name, lease_namespace=args.lease_namespace,
        lease_duration=duration, renew_deadline=duration * 2 / 3,
        retry_period=max(0.5, duration / 7.5))
