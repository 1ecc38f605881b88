"""`serve --controller` on a real kube-apiserver (and a real kube-controller-manager for
garbage collection): ServiceLevels objects become the PrometheusRules `generate` writes."""

from __future__ import annotations

import contextlib
import copy
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from sloexporter.controller import FIELD_MANAGER, build
from tests.kube_real import (
    NAMESPACE,
    TEAM_NS,
    KubeCluster,
    _spawn,
    _stop,
    rendered_rbac,
    shared_dir,
    tool,
)
from tests.test_crd import install_crd, native_to_object
from tests.tools import ROOT, free_port

pytest_plugins = ["tests.kube_real"]

NS = "slo-team"
LEASE_NS = "sloexporter"
EXAMPLE = ROOT / "examples" / "slos" / "checkout-api.yaml"
SL_PATH = f"/apis/sloexporter.dev/v1/namespaces/{NS}/servicelevels"
RULES_PATH = f"/apis/monitoring.coreos.com/v1/namespaces/{NS}/prometheusrules"
TIMEOUT = 60.0  # a loaded 2-core machine


def wait_for(what: str, check: Callable[[], Any], timeout: float = TIMEOUT) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}; last: {str(last)[:500]}")


@pytest.fixture(scope="module")
def cluster(kube_cluster: KubeCluster) -> KubeCluster:
    shared = shared_dir()
    if shared is None:
        pytest.skip("../shared/crds is absent: the PrometheusRule CRD comes from there")
    crd = shared / "crds" / "prometheus-operator" / "monitoring.coreos.com_prometheusrules.yaml"
    kube_cluster.kubectl("apply", "--server-side", "-f", str(crd))
    install_crd(kube_cluster)
    wait_for("PrometheusRules served", lambda: kube_cluster.request(
        "GET", "/apis/monitoring.coreos.com/v1/prometheusrules")[0] == 200)
    kube_cluster.ensure_namespace(NS)
    kube_cluster.ensure_namespace(LEASE_NS)
    return kube_cluster


class ControllerProcess:
    """`sloexporter serve --controller` as a child process, as users run it."""

    def __init__(self, cluster: KubeCluster, workdir: Path, name: str,
                 user: str = "admin", extra: tuple[str, ...] = ()) -> None:
        self.port = free_port()
        config = workdir / f"{name}.yaml"
        config.write_text(yaml.safe_dump({
            "cluster": {"mode": "kubeconfig", "kubeconfig": str(cluster.kubeconfig(user))},
            "sources": {s: {"enabled": False} for s in
                        ("argocd", "backups", "certificates", "services")}}))
        self.log = workdir / f"{name}.log"
        self.proc = _spawn([sys.executable, "-m", "sloexporter.cli", "serve", "--controller",
                            "--config", str(config), "--listen", f"127.0.0.1:{self.port}",
                            "--controller-namespace", NS, "--lease-namespace", LEASE_NS,
                            "--lease-duration", "4", "--controller-resync", "3",
                            "--controller-rule-labels", "release=kube-prometheus-stack",
                            "--log-level", "debug", *extra], self.log)

    def holds(self, lease: dict[str, Any]) -> bool:
        """Whether `lease` names this process as its holder (`host_pid_random`)."""
        import socket
        holder = (lease.get("spec") or {}).get("holderIdentity") or ""
        return holder.startswith(f"{socket.gethostname()}_{self.proc.pid}_")

    def ready(self) -> tuple[int, str]:
        """/readyz: status and body."""
        import urllib.error
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz",
                                        timeout=5) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
        except OSError as exc:
            return 0, str(exc)

    def metrics(self) -> dict[str, float]:
        from prometheus_client.parser import text_string_to_metric_families
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics",
                                        timeout=5) as resp:
                text = resp.read().decode()
        except OSError:
            return {}
        out: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.name.startswith("sloexporter_controller"):
                    labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
                    out[f"{s.name}{{{labels}}}"] = s.value
        return out

    def reconciles(self) -> float:
        return sum(v for k, v in self.metrics().items()
                   if k.startswith("sloexporter_controller_reconciles_total"))

    def leader(self) -> float | None:
        return self.metrics().get("sloexporter_controller_leader{}")

    def stop(self) -> None:
        _stop(self.proc)

    def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)


@pytest.fixture
def controller(cluster: KubeCluster, tmp_path: Path) -> Iterator[ControllerProcess]:
    proc = ControllerProcess(cluster, tmp_path, "controller")
    try:
        wait_for("the controller leads", lambda: proc.leader() == 1)
        yield proc
    finally:
        proc.stop()
        print(proc.log.read_text()[-3000:])


def offline_rule(spec: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
    """What `sloexporter generate --format prometheus-operator` writes for `spec`."""
    src = tmp_path / "spec" / "svc.yaml"
    src.parent.mkdir(parents=True, exist_ok=True)
    src.write_text(yaml.safe_dump({"apiVersion": "sloexporter.dev/v1",
                                   "kind": "ServiceLevels", **spec}))
    out = tmp_path / "out"
    res = subprocess.run([sys.executable, "-m", "sloexporter.cli", "generate", str(src), "-o",
                          str(out), "--format", "prometheus-operator", "--rule-labels",
                          "release=kube-prometheus-stack"], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    return yaml.safe_load((out / "rules" / f"{spec['service']}.yaml").read_text())


def get(cluster: KubeCluster, path: str) -> dict[str, Any] | None:
    status, body = cluster.request("GET", path)
    return body if status == 200 else None


def ready(cluster: KubeCluster, name: str, generation: int) -> dict[str, Any] | None:
    obj = get(cluster, f"{SL_PATH}/{name}")
    status = (obj or {}).get("status") or {}
    if status.get("observedGeneration") != generation:
        return None
    return next((c for c in status.get("conditions") or () if c["type"] == "Ready"), None)


def events(cluster: KubeCluster, name: str) -> list[dict[str, Any]]:
    body = cluster.api("GET", f"/api/v1/namespaces/{NS}/events")
    return [e for e in body["items"] if e["involvedObject"].get("name") == name]


@contextlib.contextmanager
def garbage_collector(cluster: KubeCluster) -> Iterator[None]:
    """A real kube-controller-manager running only the garbage collector."""
    binary = tool("kube-controller-manager")
    if binary is None:
        from tests.tools import require_tool
        require_tool("kube-controller-manager")
    kubeconfig = str(cluster.kubeconfig("admin"))
    proc = _spawn([binary, f"--kubeconfig={kubeconfig}", "--controllers=garbagecollector",
                   "--leader-elect=false", "--use-service-account-credentials=false",
                   f"--authentication-kubeconfig={kubeconfig}",
                   f"--authorization-kubeconfig={kubeconfig}", "--bind-address=127.0.0.1",
                   f"--secure-port={free_port()}",
                   f"--cert-dir={cluster.workdir / 'kcm-certs'}"],
                  cluster.workdir / "kube-controller-manager.log")
    try:
        yield
    finally:
        _stop(proc)


def test_create_edit_invalid_edit_delete(cluster: KubeCluster, controller: ControllerProcess,
                                         tmp_path: Path) -> None:
    obj = native_to_object(EXAMPLE, "checkout", NS)
    spec = copy.deepcopy(obj["spec"])
    created = cluster.api("POST", SL_PATH, obj)
    uid = created["metadata"]["uid"]

    # create: the rule `generate` writes, owned by the object, applied by our manager
    cond = wait_for("Ready", lambda: ready(cluster, "checkout", 1))
    assert (cond["status"], cond["reason"]) == ("True", "Generated"), cond
    rule = cluster.api("GET", f"{RULES_PATH}/sloexporter-checkout")
    expected = offline_rule(spec, tmp_path)
    assert rule["spec"] == expected["spec"]
    assert rule["metadata"]["labels"] == expected["metadata"]["labels"]
    assert rule["metadata"]["name"] == expected["metadata"]["name"]
    owner, = rule["metadata"]["ownerReferences"]
    assert (owner["uid"], owner["kind"], owner["controller"]) == (uid, "ServiceLevels", True)
    assert {m["manager"] for m in rule["metadata"]["managedFields"]} == {FIELD_MANAGER}
    status = cluster.api("GET", f"{SL_PATH}/checkout")["status"]
    assert status["generated"] == [{"apiVersion": "monitoring.coreos.com/v1",
                                    "kind": "PrometheusRule", "name": "sloexporter-checkout"}]
    assert status["slos"] == 2
    wait_for("a Normal event", lambda: any(e["reason"] == "Generated" and
                                           e["type"] == "Normal"
                                           for e in events(cluster, "checkout")))

    # resyncs (every 3 s here) re-apply without changing anything
    version = rule["metadata"]["resourceVersion"]
    sl_version = cluster.api("GET", f"{SL_PATH}/checkout")["metadata"]["resourceVersion"]
    before = controller.reconciles()
    wait_for("two resyncs", lambda: controller.reconciles() >= before + 2)
    assert cluster.api("GET", f"{RULES_PATH}/sloexporter-checkout")["metadata"][
        "resourceVersion"] == version
    assert cluster.api("GET", f"{SL_PATH}/checkout")["metadata"]["resourceVersion"] == \
        sl_version

    # edit: the rule follows
    spec["slos"][0]["objective"] = 99.5
    cluster.api("PATCH", f"{SL_PATH}/checkout", {"spec": {"slos": spec["slos"]}},
                content_type="application/merge-patch+json")
    cond = wait_for("Ready after the edit", lambda: ready(cluster, "checkout", 2))
    assert cond["status"] == "True", cond
    rule = cluster.api("GET", f"{RULES_PATH}/sloexporter-checkout")
    assert rule["spec"] == offline_rule(spec, tmp_path / "edit")["spec"]
    assert "0.995" in str(rule["spec"]) or "99.5" in str(rule["spec"])
    good = rule["metadata"]["resourceVersion"]

    # an invalid edit (the CRD lets a number through; the model refuses it): Ready=False
    # with every error as path: message, and the last good rule untouched
    bad = copy.deepcopy(spec["slos"])
    bad[0]["objective"] = 120
    bad[1]["sli"]["http"]["threshold"] = 0.3
    cluster.api("PATCH", f"{SL_PATH}/checkout", {"spec": {"slos": bad}},
                content_type="application/merge-patch+json")
    cond = wait_for("Ready=False", lambda: ready(cluster, "checkout", 3))
    assert (cond["status"], cond["reason"]) == ("False", "InvalidSpec"), cond
    assert "spec.slos[0].objective: objective 120 must be" in cond["message"], cond
    assert "spec.slos[1].sli.http.threshold: threshold 0.3 is not a bucket boundary" in \
        cond["message"], cond
    assert "sloexporter-checkout is kept" in cond["message"]
    warning = wait_for("a Warning event", lambda: [e for e in events(cluster, "checkout")
                                                   if e["reason"] == "InvalidSpec"])
    assert warning[0]["type"] == "Warning" and "spec.slos[0].objective" in \
        warning[0]["message"]
    assert cluster.api("GET", f"{RULES_PATH}/sloexporter-checkout")["metadata"][
        "resourceVersion"] == good
    assert cluster.api("GET", f"{SL_PATH}/checkout")["status"]["generated"][0]["name"] == \
        "sloexporter-checkout"
    metrics = controller.metrics()
    assert metrics["sloexporter_controller_reconciles_total{result=invalid}"] >= 1
    assert metrics["sloexporter_controller_resources{condition=Ready,status=False}"] == 1
    assert metrics["sloexporter_controller_reconcile_duration_seconds_count{}"] >= 3

    # fixed again: Ready=True, the rule follows
    cluster.api("PATCH", f"{SL_PATH}/checkout", {"spec": {"slos": spec["slos"]}},
                content_type="application/merge-patch+json")
    cond = wait_for("Ready again", lambda: ready(cluster, "checkout", 4))
    assert cond["status"] == "True"

    # delete: the garbage collector of a real kube-controller-manager removes the rule
    with garbage_collector(cluster):
        cluster.api("DELETE", f"{SL_PATH}/checkout")
        wait_for("the rule garbage-collected", lambda: cluster.request(
            "GET", f"{RULES_PATH}/sloexporter-checkout")[0] == 404, timeout=120)


def test_malformed_objects_never_stop_the_controller(cluster: KubeCluster,
                                                     controller: ControllerProcess) -> None:
    # a spec the CRD accepts but nothing can build (no SLI kind, a string objective), a
    # renamed service, and a second object claiming a rule name that is taken
    odd = native_to_object(EXAMPLE, "odd", NS)
    odd["spec"]["slos"][0]["sli"] = {}
    odd["spec"]["slos"][0]["objective"] = "high"
    cluster.api("POST", SL_PATH, odd)
    good = native_to_object(EXAMPLE, "payments", NS)
    good["spec"]["service"] = "payments"
    cluster.api("POST", SL_PATH, good)
    cond = wait_for("odd reported", lambda: ready(cluster, "odd", 1))
    assert cond["status"] == "False" and "spec.slos[0].sli: sli needs exactly one of" in \
        cond["message"] and "spec.slos[0].objective:" in cond["message"], cond
    assert "kept" not in cond["message"]  # never was good: there is no rule to keep
    assert wait_for("payments ready", lambda: ready(cluster, "payments", 1))["status"] == "True"
    assert cluster.request("GET", f"{RULES_PATH}/sloexporter-checkout")[0] == 404

    # the service renamed: the new rule appears and the old one (ours) goes
    cluster.api("PATCH", f"{SL_PATH}/payments", {"spec": {"service": "billing"}},
                content_type="application/merge-patch+json")
    assert wait_for("renamed", lambda: ready(cluster, "payments", 2))["status"] == "True"
    assert get(cluster, f"{RULES_PATH}/sloexporter-billing") is not None
    wait_for("the old rule removed", lambda: cluster.request(
        "GET", f"{RULES_PATH}/sloexporter-payments")[0] == 404)

    # another object for the same service: the rule is not stolen, the conflict is shown
    twin = native_to_object(EXAMPLE, "billing-twin", NS)
    twin["spec"]["service"] = "billing"
    cluster.api("POST", SL_PATH, twin)
    cond = wait_for("conflict reported", lambda: ready(cluster, "billing-twin", 1))
    assert (cond["status"], cond["reason"]) == ("False", "Conflict"), cond
    assert "belongs to ServiceLevels slo-team/payments" in cond["message"]
    rule = cluster.api("GET", f"{RULES_PATH}/sloexporter-billing")
    owners = rule["metadata"]["ownerReferences"]
    assert [o["name"] for o in owners] == ["payments"], owners
    assert ready(cluster, "payments", 2)["status"] == "True"
    for name in ("odd", "payments", "billing-twin"):
        cluster.api("DELETE", f"{SL_PATH}/{name}")
    cluster.delete_collection("monitoring.coreos.com/v1", "prometheusrules", NS)


def test_offline_and_controller_pipelines_are_one() -> None:
    # the controller's rule is generate's document plus namespace and owner, nothing else
    from sloexporter.output import rule_document
    from sloexporter.specs import load_paths

    services, errors = load_paths([str(EXAMPLE)])
    assert not errors
    obj = native_to_object(EXAMPLE, "x", NS)
    obj["metadata"]["uid"] = "1234"
    out = build(obj, {"team": "a"})
    doc = rule_document(services[0], "prometheus-operator", {"team": "a"})
    assert out.rule is not None and out.rule["spec"] == doc["spec"]
    assert {k: v for k, v in out.rule["metadata"].items()
            if k not in ("namespace", "ownerReferences")} == doc["metadata"]


def test_two_replicas_one_writer_and_a_takeover(cluster: KubeCluster, tmp_path: Path) -> None:
    lease_path = (f"/apis/coordination.k8s.io/v1/namespaces/{LEASE_NS}/leases/"
                  "sloexporter-controller")
    cluster.api("DELETE", lease_path, ok=(200, 404))  # left by an earlier test's leader
    a = ControllerProcess(cluster, tmp_path, "a")
    b = ControllerProcess(cluster, tmp_path, "b")
    try:
        leaders = wait_for("one leader", lambda: [p for p in (a, b) if p.leader() == 1]
                           if {a.leader(), b.leader()} == {0, 1} else None)
        leader, = leaders
        follower = b if leader is a else a
        lease = cluster.api("GET", lease_path)
        assert leader.holds(lease), lease
        assert lease["spec"]["leaseDurationSeconds"] == 4

        obj = native_to_object(EXAMPLE, "ha", NS)
        cluster.api("POST", SL_PATH, obj)
        assert wait_for("Ready", lambda: ready(cluster, "ha", 1))["status"] == "True"
        wait_for("the leader counts it", lambda: leader.reconciles() >= 1)
        assert follower.reconciles() == 0 and follower.leader() == 0
        # a healthy follower serves the exporter: it is ready
        assert follower.ready()[0] == 200, follower.ready()
        # the follower watches too: it knows the object, it just does not write
        assert follower.metrics()[
            "sloexporter_controller_resources{condition=Ready,status=True}"] == 1

        leader.kill()
        killed = time.monotonic()
        wait_for("the follower takes over", lambda: follower.leader() == 1, timeout=30)
        took = time.monotonic() - killed
        # the lease expires 4 s after the last renewal; polling and a loaded machine add
        # a little, but never another lease duration
        assert took < 4 + 4, took
        assert follower.holds(cluster.api("GET", lease_path))
        cluster.api("PATCH", f"{SL_PATH}/ha", {"spec": {"labels": {"team": "sre"}}},
                    content_type="application/merge-patch+json")
        assert wait_for("the new leader writes", lambda: ready(cluster, "ha", 2))[
            "status"] == "True"
        rule = cluster.api("GET", f"{RULES_PATH}/sloexporter-checkout")
        assert "sre" in str(rule["spec"])
    finally:
        for proc in (a, b):
            proc.stop()
        cluster.request("DELETE", f"{SL_PATH}/ha")
        cluster.delete_collection("monitoring.coreos.com/v1", "prometheusrules", NS)


def _blocks(text: str, lang: str) -> list[str]:
    import re
    return re.findall(rf"```{lang}\n(.*?)```", text, re.S)


def test_the_documented_argocd_flow(cluster: KubeCluster, tmp_path: Path) -> None:
    import shlex

    from tests.tools import doc
    page = doc("controller")
    manifest, = _blocks(page, "yaml")
    (tmp_path / "checkout-slos.yaml").write_text(manifest)
    obj = yaml.safe_load(manifest)
    ns = obj["metadata"]["namespace"]
    cluster.ensure_namespace(ns)
    proc = ControllerProcess(cluster, tmp_path, "argocd", extra=(
        "--controller-namespace", ns, "--no-leader-election"))
    kubectl = tool("kubectl")
    try:
        wait_for("the controller listed", lambda: proc.metrics() != {})
        outputs = []
        for block in _blocks(page, "bash"):
            for line in block.strip().splitlines():
                argv = shlex.split(line)
                assert argv[0] == "kubectl", line
                res = subprocess.run([kubectl, "--kubeconfig", str(cluster.kubeconfig()),
                                      *argv[1:]], cwd=tmp_path, capture_output=True,
                                     text=True, timeout=120)
                assert res.returncode == 0, (line, res.stderr)
                outputs.append(res.stdout)
        # the rule appeared, the table shows the object Ready, and after the typo the
        # message names the field while the rule stays
        assert "sloexporter-checkout" in outputs[2]
        assert "True" in outputs[3] and "Generated" in outputs[3]
        assert outputs[-1].startswith("spec.slos[0].objective: objective 100 must be"), \
            outputs[-1]
        assert cluster.request("GET", f"/apis/monitoring.coreos.com/v1/namespaces/{ns}/"
                                      "prometheusrules/sloexporter-checkout")[0] == 200
    finally:
        proc.stop()
        cluster.request("DELETE", f"/apis/sloexporter.dev/v1/namespaces/{ns}/servicelevels/"
                                  "checkout")


def _verbs(docs: list[dict[str, Any]]) -> set[tuple[str, str, str, str]]:
    """(kind, namespace, resource, verb) of every grant in rendered RBAC."""
    return {(d["kind"], d["metadata"].get("namespace", ""), res, verb)
            for d in docs if d["kind"] in ("Role", "ClusterRole")
            for rule in d.get("rules") or () for res in rule["resources"]
            for verb in rule["verbs"]}


def test_chart_grants_writes_only_with_the_controller_and_only_in_its_namespaces():
    if tool("helm") is None:
        from tests.tools import require_tool
        require_tool("helm")
    default = _verbs(rendered_rbac("sloexporter"))
    assert {verb for *_, verb in default} <= {"list", "watch"}  # read-only by default
    values = {"controller": {"enabled": True, "namespaces": ["team-a", "team-b"]}}
    grants = _verbs(rendered_rbac("sloexporter", values))
    writes = {g for g in grants if g[3] not in ("list", "watch")}
    assert {(kind, ns) for kind, ns, *_ in writes} == {
        ("Role", "team-a"), ("Role", "team-b"), ("Role", "sloexporter")}
    assert {(res, verb) for _, ns, res, verb in writes if ns == "team-a"} == {
        ("servicelevels/status", "patch"), ("prometheusrules", "get"),
        ("prometheusrules", "create"), ("prometheusrules", "patch"),
        ("prometheusrules", "delete"), ("events", "create")}
    assert {(res, verb) for _, ns, res, verb in writes if ns == "sloexporter"} == {
        ("leases", "create"), ("leases", "get"), ("leases", "update")}
    assert grants - writes == default | {("Role", ns, "servicelevels", v)
                                         for ns in ("team-a", "team-b")
                                         for v in ("list", "watch")}
    assert not {g for g in grants if g[2] == "configmaps"}
    dashboards = _verbs(rendered_rbac("sloexporter", {"controller": {
        **values["controller"], "dashboards": True}}))
    assert dashboards - grants == {("Role", ns, "configmaps", v) for ns in ("team-a", "team-b")
                                   for v in ("get", "create", "patch", "delete")}
    peers = _verbs(rendered_rbac("sloexporter", {"controller": {
        **values["controller"], "sloth": True, "pyrra": True}}))
    assert peers - grants == {("Role", ns, res, v) for ns in ("team-a", "team-b")
                              for res in ("prometheusservicelevels", "servicelevelobjectives")
                              for v in ("list", "watch")}


@contextlib.contextmanager
def chart_controller_rbac(cluster: KubeCluster, tmp_path: Path, **controller: object
                          ) -> Iterator[list[dict]]:
    """Apply the controller's Roles and RoleBindings exactly as the chart renders them
    (release `sloexporter`: its ServiceAccount is the harness's `exporter` user); remove
    them afterwards."""
    docs = [d for d in rendered_rbac("sloexporter", {"controller": {
        "enabled": True, "namespaces": [NS], **controller}}) if d["metadata"]["name"]
        .startswith("sloexporter-controller")]
    path = tmp_path / "controller-rbac.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    cluster.kubectl("apply", "--server-side", "-f", str(path))
    try:
        yield docs
    finally:
        for d in docs:
            kind = "roles" if d["kind"] == "Role" else "rolebindings"
            cluster.request("DELETE", f"/apis/rbac.authorization.k8s.io/v1/namespaces/"
                                      f"{d['metadata']['namespace']}/{kind}/"
                                      f"{d['metadata']['name']}")


def test_controller_runs_with_exactly_the_chart_rbac(cluster: KubeCluster,
                                                      tmp_path: Path) -> None:
    with chart_controller_rbac(cluster, tmp_path) as docs:
        assert {d["kind"] for d in docs} == {"Role", "RoleBinding"}
        cluster.api("DELETE", f"/apis/coordination.k8s.io/v1/namespaces/{NAMESPACE}/leases/"
                              "sloexporter-controller", ok=(200, 404))
        sa = f"system:serviceaccount:{NAMESPACE}:sloexporter"
        assert cluster.kubectl("auth", "can-i", "patch", "prometheusrules", "-n", NS,
                               "--as", sa).strip() == "yes"
        res = subprocess.run([tool("kubectl"), "--kubeconfig", str(cluster.kubeconfig()),
                              "auth", "can-i", "patch", "prometheusrules", "-n", "team-a",
                              "--as", sa], capture_output=True, text=True, timeout=60)
        assert res.stdout.strip() == "no"
        proc = ControllerProcess(cluster, tmp_path, "rbac", user="exporter", extra=(
            "--lease-namespace", NAMESPACE))
        try:
            wait_for("leading under the chart's Lease Role", lambda: proc.leader() == 1)
            obj = native_to_object(EXAMPLE, "rbac", NS)
            cluster.api("POST", SL_PATH, obj)
            assert wait_for("Ready", lambda: ready(cluster, "rbac", 1))["status"] == "True"
            assert get(cluster, f"{RULES_PATH}/sloexporter-checkout") is not None
            wait_for("its event", lambda: any(e["reason"] == "Generated"
                                              for e in events(cluster, "rbac")))
            cluster.api("PATCH", f"{SL_PATH}/rbac", {"spec": {"slos": []}},
                        content_type="application/merge-patch+json", ok=(422,))
            cluster.api("PATCH", f"{SL_PATH}/rbac", {"spec": {"service": "Bad Name"}},
                        content_type="application/merge-patch+json")
            cond = wait_for("Ready=False", lambda: ready(cluster, "rbac", 2))
            assert cond["reason"] == "InvalidSpec" and "spec.service:" in cond["message"]
            assert "forbidden" not in proc.log.read_text().lower()
        finally:
            proc.stop()
            cluster.request("DELETE", f"{SL_PATH}/rbac")
            cluster.delete_collection("monitoring.coreos.com/v1", "prometheusrules", NS)


@pytest.mark.parametrize(("crd_path", "example", "plural", "prefix"), [
    ("crds/sloth/sloth.slok.dev_prometheusservicelevels.yaml",
     "peers/sloth/examples/k8s-getting-started.yml",
     "/apis/sloth.slok.dev/v1/namespaces/{ns}/prometheusservicelevels", "sloth"),
    ("peers/pyrra/config/crd/bases/pyrra.dev_servicelevelobjectives.yaml",
     "peers/pyrra/examples/prometheus-operator.yaml",
     "/apis/pyrra.dev/v1alpha1/namespaces/{ns}/servicelevelobjectives", "pyrra"),
])
def test_sloth_and_pyrra_resources(cluster: KubeCluster, tmp_path: Path, crd_path: str,
                                   example: str, plural: str, prefix: str) -> None:
    shared = shared_dir()
    assert shared is not None
    cluster.kubectl("apply", "--server-side", "-f", str(shared / crd_path))
    path = plural.format(ns=NS)
    wait_for("the peer's CRD served", lambda: cluster.request("GET", path)[0] == 200)
    docs = [d for d in yaml.safe_load_all((shared / example).read_text()) if d]
    obj = next(d for d in docs if d.get("kind") in ("PrometheusServiceLevel",
                                                     "ServiceLevelObjective"))
    obj["metadata"]["namespace"] = NS
    (tmp_path / "spec").mkdir()
    (tmp_path / "spec" / "peer.yaml").write_text(yaml.safe_dump(obj))
    res = subprocess.run([sys.executable, "-m", "sloexporter.cli", "generate",
                          str(tmp_path / "spec"), "-o", str(tmp_path / "out"), "--format",
                          "prometheus-operator", "--rule-labels",
                          "release=kube-prometheus-stack"], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    expected, = [yaml.safe_load(p.read_text()) for p in (tmp_path / "out" / "rules").iterdir()]
    # as the chart's ServiceAccount, with the Roles `controller.<prefix>: true` renders
    with chart_controller_rbac(cluster, tmp_path, **{prefix: True, "dashboards": True}):
        proc = ControllerProcess(cluster, tmp_path, prefix, user="exporter", extra=(
            f"--controller-{prefix}", "--no-leader-election", "--controller-dashboards"))
        name = obj["metadata"]["name"]
        rule_name = f"sloexporter-{prefix}-{name}"
        try:
            cluster.api("POST", path, obj)
            rule = wait_for("the rule", lambda: get(cluster, f"{RULES_PATH}/{rule_name}"))
            assert rule["spec"] == expected["spec"]
            assert rule["metadata"]["ownerReferences"][0]["kind"] == obj["kind"]
            # its dashboards too, named and owned like its rule
            cm = wait_for("the dashboards", lambda: get(
                cluster, f"/api/v1/namespaces/{NS}/configmaps/{rule_name}-dashboards"))
            assert cm["metadata"]["ownerReferences"][0]["uid"] == rule["metadata"][
                "ownerReferences"][0]["uid"]
            assert cm["metadata"]["labels"] == {"grafana_dashboard": "1"}
            assert any(k.endswith("-slo-detail.json") for k in cm["data"])
            wait_for("a Generated event", lambda: any(
                e["reason"] == "Generated" and e["involvedObject"]["kind"] == obj["kind"]
                for e in events(cluster, name)))
            assert "forbidden" not in proc.log.read_text().lower()
        finally:
            proc.stop()
            cluster.request("DELETE", f"{path}/{name}")
            cluster.request("DELETE", f"/api/v1/namespaces/{NS}/configmaps/{rule_name}"
                                      "-dashboards")
            cluster.delete_collection("monitoring.coreos.com/v1", "prometheusrules", NS)



def generated_dashboards(spec: dict[str, Any], tmp_path: Path) -> dict[str, dict[str, Any]]:
    """The dashboards `sloexporter generate` writes for `spec`, by file name."""
    import json
    offline_rule(spec, tmp_path)
    return {p.stem: json.loads(p.read_text())
            for p in (tmp_path / "out" / "dashboards").glob("*.json")}


def _identity_free(dash: dict[str, Any]) -> dict[str, Any]:
    """A dashboard without what names it (uid, title, links to its siblings)."""
    import json
    import re
    text = re.sub(r'/d/sloexporter-[a-z-]+?(-[0-9a-f]{8})?(?=[?"])', "/d/X", json.dumps(dash))
    return {k: v for k, v in json.loads(text).items() if k not in ("uid", "title")}


def many_slos(spec: dict[str, Any], count: int) -> list[dict[str, Any]]:
    """`count` copies of the spec's first SLO under other names: a spec far too large
    for one PrometheusRule (about 13 KB of rules per SLO)."""
    return [{**copy.deepcopy(spec["slos"][0]), "name": f"slo-{i}"} for i in range(count)]


def test_dashboard_configmaps(cluster: KubeCluster, tmp_path: Path) -> None:
    """--controller-dashboards, as the chart's ServiceAccount with exactly the Roles
    `controller.dashboards: true` renders: one ConfigMap per object with the dashboards
    `generate` writes, owned by the object, kept on an invalid or too large edit."""
    import json
    cm_path = f"/api/v1/namespaces/{NS}/configmaps/sloexporter-checkout-dashboards"
    with chart_controller_rbac(cluster, tmp_path, dashboards=True) as docs:
        assert any("configmaps" in r["resources"] for d in docs if d["kind"] == "Role"
                   for r in d["rules"])
        proc = ControllerProcess(cluster, tmp_path, "dash", user="exporter", extra=(
            "--controller-dashboards", "--controller-dashboard-label", "grafana_dashboard=1",
            "--controller-dashboard-label", "example.com/team=sre", "--no-leader-election"))
        obj = native_to_object(EXAMPLE, "dash", NS)
        spec = copy.deepcopy(obj["spec"])
        try:
            uid = cluster.api("POST", SL_PATH, obj)["metadata"]["uid"]
            cond = wait_for("Ready", lambda: ready(cluster, "dash", 1))
            assert cond["status"] == "True", cond
            cm = cluster.api("GET", cm_path)
            assert cm["metadata"]["labels"] == {"grafana_dashboard": "1",
                                                "example.com/team": "sre"}
            owner, = cm["metadata"]["ownerReferences"]
            assert (owner["uid"], owner["controller"]) == (uid, True)
            assert {m["manager"] for m in cm["metadata"]["managedFields"]} == {FIELD_MANAGER}
            # generate's per-service dashboards, named after the object so that many
            # objects' dashboards do not replace each other in Grafana or the sidecar
            offline = generated_dashboards(spec, tmp_path / "gen")
            files = {k.removeprefix(f"{NS}-checkout-").removesuffix(".json"): json.loads(v)
                     for k, v in cm["data"].items()}
            assert set(files) == {"slo-overview", "slo-detail", "golden-signals"}
            for name, dash in files.items():
                assert _identity_free(dash) == _identity_free(offline[name]), name
                assert dash["uid"].startswith(offline[name]["uid"] + "-")
                assert len(dash["uid"]) <= 40 and dash["title"].endswith(f"{NS}/checkout")
            assert len({d["uid"] for d in files.values()}) == 3
            detail = files["slo-detail"]["uid"]
            assert f"/d/{detail}" in cm["data"][f"{NS}-checkout-slo-overview.json"]
            status = cluster.api("GET", f"{SL_PATH}/dash")["status"]
            assert status["generated"] == [
                {"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
                 "name": "sloexporter-checkout"},
                {"apiVersion": "v1", "kind": "ConfigMap",
                 "name": "sloexporter-checkout-dashboards"}]
            assert "ConfigMap sloexporter-checkout-dashboards" in cond["message"]

            # applied twice (an ArgoCD re-sync): nothing changes
            version = cm["metadata"]["resourceVersion"]
            manifest = tmp_path / "dash.yaml"
            manifest.write_text(yaml.safe_dump({k: v for k, v in cluster.api(
                "GET", f"{SL_PATH}/dash").items() if k in ("apiVersion", "kind", "spec")} | {
                "metadata": {"name": "dash", "namespace": NS}}))
            for _ in range(2):
                cluster.kubectl("apply", "--server-side", "-f", str(manifest))
            before = proc.reconciles()
            wait_for("a resync", lambda: proc.reconciles() >= before + 1)
            assert cluster.api("GET", f"{SL_PATH}/dash")["metadata"]["generation"] == 1
            assert cluster.api("GET", cm_path)["metadata"]["resourceVersion"] == version

            # an invalid edit: the last good ConfigMap and rule stay, and the message says so
            bad = copy.deepcopy(spec["slos"])
            bad[0]["objective"] = 120
            cluster.api("PATCH", f"{SL_PATH}/dash", {"spec": {"slos": bad}},
                        content_type="application/merge-patch+json")
            cond = wait_for("Ready=False", lambda: ready(cluster, "dash", 2))
            assert cond["reason"] == "InvalidSpec", cond
            assert "the last good rule sloexporter-checkout and dashboards " \
                   "sloexporter-checkout-dashboards are kept" in cond["message"], cond
            assert cluster.api("GET", cm_path)["metadata"]["resourceVersion"] == version

            # a valid spec too large for a PrometheusRule (etcd stores 1.5 MiB): a clear
            # Ready=False, nothing replaced, and the controller keeps serving
            rule_version = cluster.api("GET", f"{RULES_PATH}/sloexporter-checkout")[
                "metadata"]["resourceVersion"]
            cluster.api("PATCH", f"{SL_PATH}/dash", {"spec": {"slos": many_slos(spec, 300)}},
                        content_type="application/merge-patch+json")
            cond = wait_for("TooLarge", lambda: ready(cluster, "dash", 3))
            assert (cond["status"], cond["reason"]) == ("False", "TooLarge"), cond
            assert "PrometheusRule sloexporter-checkout would be" in cond["message"]
            assert "split the SLOs over several objects" in cond["message"]
            assert "are kept" in cond["message"]
            assert cluster.api("GET", f"{RULES_PATH}/sloexporter-checkout")["metadata"][
                "resourceVersion"] == rule_version
            assert cluster.api("GET", cm_path)["metadata"]["resourceVersion"] == version
            assert [g["kind"] for g in cluster.api("GET", f"{SL_PATH}/dash")["status"][
                "generated"]] == ["PrometheusRule", "ConfigMap"]
            assert proc.ready()[0] == 200

            # fixed: both follow; deleted: the garbage collector takes both
            cluster.api("PATCH", f"{SL_PATH}/dash", {"spec": {"slos": spec["slos"]}},
                        content_type="application/merge-patch+json")
            assert wait_for("Ready again", lambda: ready(cluster, "dash", 4))["status"] == \
                "True"
            assert "forbidden" not in proc.log.read_text().lower()
            with garbage_collector(cluster):
                cluster.api("DELETE", f"{SL_PATH}/dash")
                wait_for("the ConfigMap garbage-collected", lambda: cluster.request(
                    "GET", cm_path)[0] == 404, timeout=120)
        finally:
            proc.stop()
            cluster.request("DELETE", f"{SL_PATH}/dash")
            cluster.request("DELETE", cm_path)
            cluster.delete_collection("monitoring.coreos.com/v1", "prometheusrules", NS)


def test_dashboards_too_large_for_a_configmap() -> None:
    # one distinct request metric set per SLO adds a golden-signals row each, so enough
    # of them outgrow a ConfigMap (1 MiB): the ConfigMap is refused with a clear message
    from sloexporter.controller import CONFIGMAP_LIMIT
    obj = native_to_object(EXAMPLE, "big", NS)
    obj["metadata"]["uid"] = "1"
    latency = next(s for s in obj["spec"]["slos"] if "http" in s["sli"])

    def with_slos(count: int) -> dict[str, Any]:
        out = copy.deepcopy(obj)
        out["spec"]["slos"] = [{**copy.deepcopy(latency), "name": f"l{i}", "sli": {"http": {
            **latency["sli"]["http"], "selector": f'{{job="svc{i}"}}'}}} for i in range(count)]
        return out

    assert build(with_slos(50), {}, None).configmap is None  # not asked for: not built
    sizes = []
    for count in (20, 40):
        small = build(with_slos(count), {}, {"grafana_dashboard": "1"})
        assert small.configmap is not None and not small.too_large
        sizes.append(sum(len(k) + len(v.encode()) for k, v in small.configmap["data"].items()))
    per_slo = (sizes[1] - sizes[0]) / 20
    big = build(with_slos(40 + int((CONFIGMAP_LIMIT - sizes[1]) / per_slo) + 10), {},
                {"grafana_dashboard": "1"})
    assert big.configmap is None and big.rule is not None and not big.errors
    assert any(m.startswith("ConfigMap sloexporter-checkout-dashboards: the dashboards are")
               and f"over the ConfigMap limit of {CONFIGMAP_LIMIT}" in m
               for m in big.too_large), big.too_large


def test_specs_nobody_feeds_on_purpose() -> None:
    # what the apiserver would not store today (the CRD requires an object spec) but a
    # relaxed CRD or a peer's object could bring: a clear error, never an exception
    for spec in (None, [], "text", 3):
        obj = {"metadata": {"name": "x", "namespace": NS}, "spec": spec}
        assert build(obj, {}).errors == ["spec: must be an object"]
    out = build({"metadata": {"name": "x", "namespace": NS}}, {}, {"a": "1"})
    assert out.errors == ["spec: must be an object"] and out.configmap is None


def test_sigterm_releases_the_lease_and_the_follower_takes_over_at_once(
        cluster: KubeCluster, tmp_path: Path) -> None:
    # a lease of 30 s: a takeover well inside it can only come from the release
    lease_path = (f"/apis/coordination.k8s.io/v1/namespaces/{LEASE_NS}/leases/"
                  "sloexporter-controller")
    cluster.api("DELETE", lease_path, ok=(200, 404))
    slow = ("--lease-duration", "30")
    a = ControllerProcess(cluster, tmp_path, "ra", extra=slow)
    b = ControllerProcess(cluster, tmp_path, "rb", extra=slow)
    try:
        wait_for("one leader", lambda: {a.leader(), b.leader()} == {0, 1})
        leader, follower = (a, b) if a.leader() == 1 else (b, a)
        assert leader.holds(cluster.api("GET", lease_path))
        transitions = cluster.api("GET", lease_path)["spec"].get("leaseTransitions", 0)
        os.kill(leader.proc.pid, signal.SIGTERM)
        stopped = time.monotonic()
        assert leader.proc.wait(10) == 0
        # exactly one writer throughout: the old leader is gone before the lease is free
        lease = cluster.api("GET", lease_path)
        assert not leader.holds(lease), lease
        wait_for("the follower takes over", lambda: follower.leader() == 1, timeout=15)
        took = time.monotonic() - stopped
        assert took < 10, took  # the lease would have run for 30 s
        lease = cluster.api("GET", lease_path)
        assert follower.holds(lease) and lease["spec"]["leaseDurationSeconds"] == 30
        assert lease["spec"]["leaseTransitions"] == transitions + 1
        assert "released lease" in leader.log.read_text()

        # the new leader writes; a release by a process that does not hold the lease
        # (SIGTERM to the follower of a new pair would be one) leaves it alone
        cluster.api("POST", SL_PATH, native_to_object(EXAMPLE, "release", NS))
        assert wait_for("Ready", lambda: ready(cluster, "release", 1))["status"] == "True"
        c = ControllerProcess(cluster, tmp_path, "rc", extra=slow)
        wait_for("the third replica follows", lambda: c.leader() == 0 and
                 c.ready()[0] == 200)
        os.kill(c.proc.pid, signal.SIGTERM)
        assert c.proc.wait(10) == 0
        lease = cluster.api("GET", lease_path)
        assert follower.holds(lease) and lease["spec"]["leaseDurationSeconds"] == 30
        assert "released lease" not in c.log.read_text()
    finally:
        for proc in (a, b):
            proc.stop()
            print(proc.log.read_text()[-2000:])
        with contextlib.suppress(NameError):
            c.stop()
        cluster.request("DELETE", f"{SL_PATH}/release")
        cluster.delete_collection("monitoring.coreos.com/v1", "prometheusrules", NS)


def test_readyz_covers_the_controller(cluster: KubeCluster, tmp_path: Path) -> None:
    # the chart's read-only user may not list ServiceLevels: the controller's watch
    # cannot list, so the replica is not ready, and says why
    proc = ControllerProcess(cluster, tmp_path, "unready", user="exporter",
                             extra=("--no-leader-election",))
    try:
        status, body = wait_for("a reason", lambda: (r := proc.ready())[0] == 503 and
                                "forbidden" in r[1] and r)
        assert "controller (servicelevels.sloexporter.dev in namespace slo-team" in body, body
        from prometheus_client.parser import text_string_to_metric_families
        with urllib.request.urlopen(f"http://127.0.0.1:{proc.port}/metrics",
                                    timeout=5) as resp:
            text = resp.read().decode()
        up = {s.labels["source"]: s.value for f in text_string_to_metric_families(text)
              for s in f.samples if s.name == "sloexporter_source_up"}
        assert up.get("controller") == 0, up
    finally:
        proc.stop()
    # with its Role (exactly as the chart renders it) the same replica becomes ready; asked
    # for dashboards the chart did not grant (controller.dashboards off), it applies the
    # rule, says on the object that the ConfigMap is forbidden, and stays ready
    with chart_controller_rbac(cluster, tmp_path):
        proc = ControllerProcess(cluster, tmp_path, "readied", user="exporter",
                                 extra=("--no-leader-election", "--controller-dashboards"))
        try:
            wait_for("ready", lambda: proc.ready()[0] == 200)
            cluster.api("POST", SL_PATH, native_to_object(EXAMPLE, "nocm", NS))
            cond = wait_for("ApplyFailed", lambda: ready(cluster, "nocm", 1))
            assert (cond["status"], cond["reason"]) == ("False", "ApplyFailed"), cond
            assert cond["message"].startswith(
                f"ConfigMap {NS}/sloexporter-checkout-dashboards: configmaps "), cond
            assert "forbidden" in cond["message"]
            assert [g["name"] for g in cluster.api("GET", f"{SL_PATH}/nocm")["status"][
                "generated"]] == ["sloexporter-checkout"]
            assert get(cluster, f"{RULES_PATH}/sloexporter-checkout") is not None
            assert proc.ready()[0] == 200
        finally:
            proc.stop()
            cluster.request("DELETE", f"{SL_PATH}/nocm")
            cluster.delete_collection("monitoring.coreos.com/v1", "prometheusrules", NS)
        # a Lease it may not touch (team-a: no Role there): its watches are fine, but it
        # can neither lead nor follow, which /readyz says once a leader would have given up
        proc = ControllerProcess(cluster, tmp_path, "nolease", user="exporter",
                                 extra=("--lease-namespace", TEAM_NS))
        try:
            status, body = wait_for("the Lease reported", lambda: (
                r := proc.ready())[0] == 503 and "lease" in r[1] and r)
            assert f"controller (lease {TEAM_NS}/sloexporter-controller: HTTP 403" in body, \
                body
            assert proc.leader() == 0
        finally:
            proc.stop()


def test_prometheusrule_crd_missing_then_installed(cluster: KubeCluster,
                                                  tmp_path: Path) -> None:
    """The CRD arrives after the objects (one ArgoCD sync of both): a clear Ready=False,
    no crash, and the rule appears by the retry's backoff, long before the resync."""
    shared = shared_dir()
    assert shared is not None
    crd_file = shared / "crds" / "prometheus-operator" / \
        "monitoring.coreos.com_prometheusrules.yaml"
    crd_path = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/" \
        "prometheusrules.monitoring.coreos.com"
    cluster.api("DELETE", crd_path, ok=(200, 404))
    try:
        wait_for("the CRD gone", lambda: cluster.request("GET", crd_path)[0] == 404 and
                 cluster.request("GET", RULES_PATH)[0] == 404)
        proc = ControllerProcess(cluster, tmp_path, "nocrd", extra=(
            "--no-leader-election", "--controller-resync", "600"))
        try:
            cluster.api("POST", SL_PATH, native_to_object(EXAMPLE, "early", NS))
            cond = wait_for("ApplyFailed", lambda: ready(cluster, "early", 1))
            assert (cond["status"], cond["reason"]) == ("False", "ApplyFailed"), cond
            assert "does not serve monitoring.coreos.com/v1 prometheusrules" in \
                cond["message"] and "CRD installed?" in cond["message"], cond
            retries = proc.metrics()["sloexporter_controller_reconciles_total{result=failed}"]
            wait_for("retried", lambda: proc.metrics()[
                "sloexporter_controller_reconciles_total{result=failed}"] > retries)
            cluster.kubectl("apply", "--server-side", "-f", str(crd_file))
            cond = wait_for("Ready once the CRD is there", lambda: (
                c := ready(cluster, "early", 1)) and c["status"] == "True" and c, timeout=90)
            assert get(cluster, f"{RULES_PATH}/sloexporter-checkout") is not None
            assert "Traceback" not in proc.log.read_text()
        finally:
            proc.stop()
            cluster.request("DELETE", f"{SL_PATH}/early")
    finally:
        cluster.kubectl("apply", "--server-side", "-f", str(crd_file))
        wait_for("PrometheusRules served", lambda: cluster.request(
            "GET", "/apis/monitoring.coreos.com/v1/prometheusrules")[0] == 200)
        cluster.delete_collection("monitoring.coreos.com/v1", "prometheusrules", NS)


def test_objects_deleted_while_they_are_reconciled(cluster: KubeCluster,
                                                   controller: ControllerProcess) -> None:
    # created and deleted at once, many of them: whatever the controller applied for an
    # object already gone is garbage-collected, and it forgets them all
    names = [f"flash-{i}" for i in range(15)]
    with garbage_collector(cluster):
        for name in names:
            obj = native_to_object(EXAMPLE, name, NS)
            obj["spec"]["service"] = name
            cluster.api("POST", SL_PATH, obj)
            cluster.api("DELETE", f"{SL_PATH}/{name}")
        wait_for("nothing left", lambda: not cluster.api("GET", RULES_PATH)["items"] and
                 not cluster.api("GET", SL_PATH)["items"], timeout=120)
        wait_for("forgotten", lambda: sum(v for k, v in controller.metrics().items()
                                          if k.startswith("sloexporter_controller_resources"))
                 == 0)
    assert controller.ready()[0] == 200
    assert "Traceback" not in controller.log.read_text()


def test_chart_args_are_the_controller_settings() -> None:
    """The Deployment's args, as the chart renders them, parse into the settings asked
    for: the dashboards with the sidecar label of `dashboards.label`."""
    from sloexporter.cli import build_parser
    from sloexporter.controller import settings_from_args
    from tests.helm_util import helm_path, render, workload

    helm = helm_path()
    values = {"controller": {"enabled": True, "namespaces": ["team-a"], "dashboards": True,
                             "ruleLabels": {"release": "kps"}},
              "dashboards": {"label": "example.com/dashboard", "labelValue": "yes"}}
    for vals, want in ((values, (True, {"example.com/dashboard": "yes"})),
                       ({"controller": {**values["controller"], "dashboards": False}},
                        (False, {"grafana_dashboard": "1"}))):
        container = workload(render(helm, vals))["spec"]["template"]["spec"]["containers"][0]
        args = [a for a in container["args"] if a != "serve"]
        parsed = build_parser().parse_args(["serve", *args])
        settings = settings_from_args(parsed)
        assert (settings.dashboards, settings.dashboard_labels) == want, args
        assert settings.namespaces == ("team-a",) and settings.rule_labels == {
            "release": "kps"}
    for bad in ("grafana dashboard=1", "a=b c", "=1"):
        with pytest.raises(ValueError, match="--controller-dashboard-label"):
            settings_from_args(build_parser().parse_args([
                "serve", "--controller", "--controller-dashboard-label", bad]))


def test_a_relist_forgets_only_its_own_kind_and_scope() -> None:
    # keys are only names: what a re-list prunes is told by each object's kind and
    # namespace, so a Sloth object named like a ServiceLevels one is never dropped
    from sloexporter.controller import PYRRA, SERVICELEVELS, SLOTH, Controller, ControllerSettings
    ctl = Controller(None, ControllerSettings(leader_election=False))
    for resource in (SERVICELEVELS, SLOTH, PYRRA):
        for ns in ("a", "b", "a:b"):
            ctl.apply(resource, "ADDED", {"metadata": {"name": "x", "namespace": ns,
                                                       "generation": 1}})
    assert len(ctl.objects) == 9
    ctl.prune(SERVICELEVELS, "a", set())
    ctl.prune(SLOTH, "", {"b/x"} | {ctl.key_of({"kind": SLOTH.kind, "metadata": {
        "name": "x", "namespace": "b"}})})
    left = sorted((o["kind"], o["metadata"]["namespace"]) for o in ctl.objects.values())
    assert left == [("PrometheusServiceLevel", "b"), ("ServiceLevelObjective", "a"),
                    ("ServiceLevelObjective", "a:b"), ("ServiceLevelObjective", "b"),
                    ("ServiceLevels", "a:b"), ("ServiceLevels", "b")]
