"""The controller from cold: N ServiceLevels (3 SLOs each) on a real kube-apiserver.

Measures, for `sloexporter serve --controller` started after the objects exist: the time
until every object is Ready (its PrometheusRule applied, its status written), the
apiserver requests per object (the apiserver's own apiserver_request_total) and the
controller's peak RSS. Same-run baseline: `kubectl apply --server-side` of the very
PrometheusRules `sloexporter generate --format prometheus-operator` writes for the same
specs (what a CI pipeline would do instead).

    PATH=$PWD/.tools/bin:$PATH .venv/bin/python bench/controller.py [--objects 1000]
        [--dashboards]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.kube_real import KubeCluster, shared_dir  # noqa: E402
from tests.test_crd import install_crd  # noqa: E402
from tests.tools import free_port  # noqa: E402


def spec(i: int) -> dict:
    job = f"svc-{i}"
    return {"service": job, "labels": {"team": f"team-{i % 10}"}, "slos": [
        {"name": "availability", "objective": 99.9, "sli": {"events": {
            "errors": f'sum(rate(http_requests_total{{job="{job}",code=~"5.."}}[{{{{window}}}}]))',
            "total": f'sum(rate(http_requests_total{{job="{job}"}}[{{{{window}}}}]))'}}},
        {"name": "latency", "objective": 99, "sli": {"latency": {
            "metric": "http_request_duration_seconds", "selector": f'{{job="{job}"}}',
            "threshold": 0.5}}},
        {"name": "ingest", "objective": 99.5, "period": "28d", "sli": {"ratio": {
            "query": f'sum(rate(ingest_failed_total{{job="{job}"}}[{{{{window}}}}])) / '
                     f'sum(rate(ingest_total{{job="{job}"}}[{{{{window}}}}]))'}}}]}


def requests_total(cluster: KubeCluster) -> float:
    status, text = cluster.request("GET", "/metrics", timeout=60)
    assert status == 200
    total = 0.0
    for line in str(text).splitlines():
        if line.startswith("apiserver_request_total{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def controller_metric(port: int, name: str) -> float:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
    except OSError:
        return 0.0
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--objects", type=int, default=1000)
    parser.add_argument("--dashboards", action="store_true",
                        help="also apply each object's dashboards ConfigMap "
                             "(--controller-dashboards)")
    args = parser.parse_args()
    n = args.objects
    shared = shared_dir()
    if shared is None:
        sys.exit("needs ../shared/crds for the PrometheusRule CRD")
    cluster = KubeCluster().start()
    work = Path(tempfile.mkdtemp(prefix="bench-controller-"))
    try:
        cluster.kubectl("apply", "--server-side", "-f", str(
            shared / "crds/prometheus-operator/monitoring.coreos.com_prometheusrules.yaml"))
        install_crd(cluster)
        for ns in ("bench", "baseline"):
            cluster.ensure_namespace(ns)
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda i: cluster.api(
                "POST", "/apis/sloexporter.dev/v1/namespaces/bench/servicelevels",
                {"apiVersion": "sloexporter.dev/v1", "kind": "ServiceLevels",
                 "metadata": {"name": f"svc-{i}", "namespace": "bench"}, "spec": spec(i)}),
                range(n)))

        # the controller, from cold
        port = free_port()
        config = work / "config.yaml"
        config.write_text(yaml.safe_dump({
            "cluster": {"mode": "kubeconfig", "kubeconfig": str(cluster.kubeconfig())},
            "sources": {s: {"enabled": False} for s in
                        ("argocd", "backups", "certificates", "services")}}))
        before = requests_total(cluster)
        started = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-m", "sloexporter.cli", "serve",
                                 "--controller", "--config", str(config), "--listen",
                                 f"127.0.0.1:{port}", "--controller-namespace", "bench",
                                 "--no-leader-election", "--log-level", "warning",
                                 *(["--controller-dashboards"] if args.dashboards else [])],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            while controller_metric(port, 'sloexporter_controller_reconciles_total'
                                          '{result="ready"}') < n:
                assert proc.poll() is None and time.monotonic() - started < 900
                time.sleep(0.2)
            took = time.monotonic() - started
            with open(f"/proc/{proc.pid}/status") as fh:
                rss = next(int(line.split()[1]) for line in fh if line.startswith("VmHWM"))
        finally:
            proc.terminate()
            proc.wait(10)
        ctl_requests = requests_total(cluster) - before

        # baseline: kubectl apply --server-side of the same generated rules
        specs = work / "specs"
        specs.mkdir()
        for i in range(n):
            (specs / f"svc-{i}.yaml").write_text(yaml.safe_dump(
                {"apiVersion": "sloexporter.dev/v1", "kind": "ServiceLevels", **spec(i)}))
        subprocess.run([sys.executable, "-m", "sloexporter.cli", "generate", str(specs), "-o",
                        str(work / "out"), "--format", "prometheus-operator"], check=True,
                       capture_output=True, timeout=600)
        before = requests_total(cluster)
        started = time.monotonic()
        cluster.kubectl("apply", "--server-side", "-n", "baseline", "-f",
                        str(work / "out" / "rules"), timeout=900)
        base = time.monotonic() - started
        base_requests = requests_total(cluster) - before
        print(f"objects: {n} ServiceLevels x 3 SLOs, cores: {os.cpu_count()}")
        what = "controller cold, dashboards:" if args.dashboards else "controller cold:"
        print(f"{what:<28} {took:6.1f} s  {ctl_requests / n:5.1f} apiserver "
              f"requests/object  peak RSS {rss / 1024:.0f} MiB")
        print(f"kubectl apply --server-side: {base:6.1f} s  {base_requests / n:5.1f} apiserver "
              f"requests/object (rules only: no status, no events)")
    finally:
        cluster.close()


if __name__ == "__main__":
    main()
