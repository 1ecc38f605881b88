"""A real etcd and kube-apiserver on 127.0.0.1, for every test that watches Kubernetes.

`KubeCluster` (usable without pytest; `bench/soak.py` and `bench/real_apiserver.py` use
it) starts etcd and one kube-apiserver on free ports with a throwaway PKI (made with
`cryptography`), a static token file and RBAC authorization; applies the CRDs from
`../shared/crds` when they are there, and the chart's rendered RBAC (`helm template`).
`extra_apiserver()` starts another apiserver on the same etcd (optionally with
`--watch-cache=false`, the only way to see a 410 after `etcdctl compact`): faults
(kill, restart, SIGSTOP) are done to that one, while the session's stays up for writes.

Users (static tokens, so a test can act as any of them):
- `admin`: system:masters;
- `exporter`: the chart's ServiceAccount `sloexporter/sloexporter`, bound by the chart's
  rendered ClusterRole;
- `exporter-ns`: ServiceAccount `sloexporter/sloexporter-ns`, bound by the chart rendered
  with every source limited to namespace `team-a` (Roles only);
- `nobody`: an authenticated user with no RBAC at all.

Pytest: `pytest_plugins = ["tests.kube_real"]` gives the session-scoped `kube_cluster`
(the binaries missing: fails under the test command, skips in a plain pytest), and
`kube_crds` (skips, saying why, when ../shared is absent).
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import json
import os
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from tests.tools import LOCAL_TOOLS, ROOT, free_port

#: CRD files a source watches, under ../shared/crds
CRD_FILES = ("argo-cd/application-crd.yaml", "cert-manager/cert-manager.io_certificates.yaml",
             "velero/velero.io_backups.yaml", "velero/velero.io_schedules.yaml")
CHART = ROOT / "helm" / "sloexporter"
NAMESPACE = "sloexporter"
TEAM_NS = "team-a"
TOKENS = {
    "admin": ("admin", "system:masters"),
    "exporter": (f"system:serviceaccount:{NAMESPACE}:sloexporter",
                 f"system:serviceaccounts,system:serviceaccounts:{NAMESPACE}"),
    "exporter-ns": (f"system:serviceaccount:{NAMESPACE}:sloexporter-ns",
                    f"system:serviceaccounts,system:serviceaccounts:{NAMESPACE}"),
    "nobody": ("nobody", "system:authenticated"),
}
START_TIMEOUT = 90.0  # a cold start on a loaded 2-core machine


def shared_dir() -> Path | None:
    """../shared (beside the checkout, or beside the worktrees folder); None if absent."""
    env = os.environ.get("SLOEXPORTER_SHARED")
    candidates = [Path(env)] if env else []
    candidates += [ROOT.parent / "shared", ROOT.parent.parent / "shared"]
    return next((c for c in candidates if (c / "crds").is_dir()), None)


def tool(name: str) -> str | None:
    return shutil.which(name, path=str(LOCAL_TOOLS)) or shutil.which(name)


# --- PKI ----------------------------------------------------------------------------------

def _pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _pem_key(key: Any) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def make_pki(folder: Path) -> None:
    """ca.crt, apiserver.crt/.key (SANs 127.0.0.1, localhost), sa.key/sa.pub."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sloexporter-test-ca")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(hours=1))
          .not_valid_after(now + dt.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    sans = [x509.DNSName("localhost"), x509.DNSName("kubernetes.default.svc"),
            x509.IPAddress(__import__("ipaddress").ip_address("127.0.0.1"))]
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "apiserver")]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .sign(ca_key, hashes.SHA256()))
    sa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (folder / "ca.crt").write_bytes(_pem_cert(ca))
    (folder / "apiserver.crt").write_bytes(_pem_cert(cert))
    (folder / "apiserver.key").write_bytes(_pem_key(key))
    (folder / "sa.key").write_bytes(_pem_key(sa))
    (folder / "sa.pub").write_bytes(sa.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    (folder / "tokens.csv").write_text("".join(
        f'{token}-token,{user},uid-{token},"{groups}"\n'
        for token, (user, groups) in TOKENS.items()))


# --- processes ----------------------------------------------------------------------------

def _spawn(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)


def _stop(proc: subprocess.Popen[bytes] | None, grace: float = 10.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGCONT)  # a frozen process cannot act on SIGTERM
        proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(grace)


class APIServer:
    """One kube-apiserver process on the cluster's etcd; can be stopped, restarted, frozen."""

    def __init__(self, cluster: KubeCluster, name: str, watch_cache: bool = True,
                 extra_args: tuple[str, ...] = ()) -> None:
        self.cluster = cluster
        self.name = name
        self.watch_cache = watch_cache
        self.extra_args = extra_args
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def argv(self) -> list[str]:
        pki = self.cluster.pki
        return [
            self.cluster.binaries["kube-apiserver"],
            f"--etcd-servers={self.cluster.etcd_url}", "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1", f"--secure-port={self.port}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}", f"--token-auth-file={pki / 'tokens.csv'}",
            "--authorization-mode=RBAC",
            "--service-account-issuer=https://kubernetes.default.svc",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--service-cluster-ip-range=10.96.0.0/16",
            "--disable-admission-plugins=ServiceAccount", "--endpoint-reconciler-type=none",
            "--profiling=false", f"--watch-cache={'true' if self.watch_cache else 'false'}",
            f"--cert-dir={self.cluster.workdir / ('certs-' + self.name)}",
            *self.extra_args]

    def start(self, wait: bool = True) -> None:
        if self.proc is not None and self.proc.poll() is None:
            return
        self.proc = _spawn(self.argv(), self.cluster.workdir / f"{self.name}.log")
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"kube-apiserver {self.name} exited: "
                                   f"{self.cluster.log_tail(self.name)}")
            try:
                status, _ = self.cluster.request("GET", "/readyz", server=self, timeout=2)
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"kube-apiserver {self.name} not ready after {timeout:.0f}s: "
                           f"{self.cluster.log_tail(self.name)}")

    def stop(self) -> None:
        _stop(self.proc, grace=3.0)  # an apiserver that takes longer is killed: a crash
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def freeze(self) -> None:
        """SIGSTOP: sockets stay open and accept, nothing answers (a hung apiserver)."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)

    def kubeconfig(self, user: str = "admin") -> Path:
        return self.cluster.write_kubeconfig(self, user)


@dataclass
class Response:
    status: int
    body: Any


class KubeCluster:
    """etcd + a kube-apiserver (+ extra apiservers on the same etcd), torn down by close()."""

    def __init__(self, workdir: Path | None = None) -> None:
        self._own_dir = workdir is None
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="sloexporter-kube-",
                                                        dir="/dev/shm" if Path("/dev/shm")
                                                        .is_dir() else None))
        self.pki = self.workdir / "pki"
        self.binaries: dict[str, str] = {}
        self.etcd: subprocess.Popen[bytes] | None = None
        self.etcd_port = free_port()
        self.apiservers: list[APIServer] = []
        self.main: APIServer | None = None
        self.crds_applied = False
        self._ssl = None

    @staticmethod
    def missing_tools() -> list[str]:
        return [t for t in ("etcd", "kube-apiserver", "etcdctl", "kubectl", "helm")
                if tool(t) is None]

    @property
    def etcd_url(self) -> str:
        return f"http://127.0.0.1:{self.etcd_port}"

    def log_tail(self, name: str, lines: int = 15) -> str:
        path = self.workdir / f"{name}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    # --- bring-up ---

    def start(self) -> KubeCluster:
        for name in ("etcd", "kube-apiserver", "etcdctl", "kubectl", "helm"):
            found = tool(name)
            if found is None:
                raise FileNotFoundError(f"{name} is not installed; run scripts/install-tools.sh")
            self.binaries[name] = found
        self.pki.mkdir(parents=True, exist_ok=True)
        make_pki(self.pki)
        self._ssl = ssl.create_default_context(cafile=str(self.pki / "ca.crt"))
        self.start_etcd()
        self.main = self.extra_apiserver_process("main")
        self.setup_rbac()
        if shared_dir() is not None:
            self.apply_crds()
        return self

    def start_etcd(self) -> None:
        peer = free_port()
        data = self.workdir / "etcd"
        self.etcd = _spawn([
            self.binaries["etcd"], "--name", "t", "--data-dir", str(data),
            "--listen-client-urls", self.etcd_url, "--advertise-client-urls", self.etcd_url,
            "--listen-peer-urls", f"http://127.0.0.1:{peer}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
            "--initial-cluster", f"t=http://127.0.0.1:{peer}", "--unsafe-no-fsync",
            "--log-level", "warn"], self.workdir / "etcd.log")
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.etcd.poll() is not None:
                raise RuntimeError(f"etcd exited: {self.log_tail('etcd')}")
            try:
                with urllib.request.urlopen(f"{self.etcd_url}/health", timeout=2) as r:
                    if json.loads(r.read()).get("health") == "true":
                        return
            except (OSError, ValueError):
                pass
            time.sleep(0.05)
        raise RuntimeError(f"etcd not healthy: {self.log_tail('etcd')}")

    def extra_apiserver_process(self, name: str, watch_cache: bool = True,
                                extra_args: tuple[str, ...] = ()) -> APIServer:
        server = APIServer(self, name, watch_cache, extra_args)
        server.start()
        self.apiservers.append(server)
        return server

    @contextlib.contextmanager
    def extra_apiserver(self, watch_cache: bool = True, extra_args: tuple[str, ...] = ()
                        ) -> Iterator[APIServer]:
        """Another apiserver on the same etcd, for faults; stopped on exit."""
        server = self.extra_apiserver_process(f"apiserver-{len(self.apiservers)}", watch_cache,
                                              extra_args)
        try:
            yield server
        finally:
            server.stop()
            self.apiservers.remove(server)

    def close(self) -> None:
        for server in self.apiservers:
            server.stop()
        _stop(self.etcd)
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # --- access ---

    def write_kubeconfig(self, server: APIServer, user: str = "admin") -> Path:
        path = self.workdir / f"kubeconfig-{server.name}-{user}"
        ca = base64.b64encode((self.pki / "ca.crt").read_bytes()).decode()
        path.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "test",
            "clusters": [{"name": "test", "cluster": {
                "server": server.url, "certificate-authority-data": ca}}],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": user}}],
            "users": [{"name": user, "user": {"token": f"{user}-token"}}]}))
        return path

    def kubeconfig(self, user: str = "admin") -> Path:
        assert self.main is not None
        return self.write_kubeconfig(self.main, user)

    def request(self, method: str, path: str, body: Any = None, user: str = "admin",
                server: APIServer | None = None, timeout: float = 30,
                content_type: str = "application/json") -> tuple[int, Any]:
        """One HTTPS request as `user`; (status, decoded JSON body or text)."""
        target = server or self.main
        assert target is not None
        data = None if body is None else (
            body if isinstance(body, bytes) else json.dumps(body).encode())
        req = urllib.request.Request(
            target.url + path, data=data, method=method,
            headers={"Authorization": f"Bearer {user}-token", "Content-Type": content_type,
                     "Accept": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout, context=self._ssl) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as err:
            status, raw = err.code, err.read()
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, raw.decode(errors="replace")

    def api(self, method: str, path: str, body: Any = None, ok: tuple[int, ...] = (200, 201),
            **kwargs: Any) -> Any:
        """request() that raises on an unexpected status."""
        status, data = self.request(method, path, body, **kwargs)
        if status not in ok:
            raise RuntimeError(f"{method} {path}: HTTP {status}: {str(data)[:500]}")
        return data

    def create(self, obj: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        return self.api("POST", collection_path(obj), obj, **kwargs)

    def replace_status(self, obj: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        """PATCH the status subresource (merge) where the kind has one, else the object."""
        name = obj["metadata"]["name"]
        patch = {"status": obj.get("status", {})}
        path = f"{collection_path(obj)}/{name}"
        status, data = self.request("PATCH", path + "/status", patch,
                                    content_type="application/merge-patch+json", **kwargs)
        if status == 404:
            return self.api("PATCH", path, patch,
                            content_type="application/merge-patch+json", **kwargs)
        if status != 200:
            raise RuntimeError(f"PATCH {path}/status: HTTP {status}: {str(data)[:500]}")
        return data

    def patch(self, obj: dict[str, Any], patch: dict[str, Any], **kwargs: Any) -> Any:
        path = f"{collection_path(obj)}/{obj['metadata']['name']}"
        return self.api("PATCH", path, patch, content_type="application/merge-patch+json",
                        **kwargs)

    def delete(self, obj: dict[str, Any], **kwargs: Any) -> Any:
        path = f"{collection_path(obj)}/{obj['metadata']['name']}"
        return self.api("DELETE", path, {"kind": "DeleteOptions", "apiVersion": "v1",
                                         "propagationPolicy": "Background",
                                         "gracePeriodSeconds": 0},
                        ok=(200, 202, 404), **kwargs)

    def ensure_namespace(self, name: str) -> None:
        self.api("POST", "/api/v1/namespaces",
                 {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
                 ok=(201, 409))

    def delete_collection(self, api_version: str, plural: str, namespace: str) -> None:
        base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
        self.api("DELETE", f"{base}/namespaces/{namespace}/{plural}", ok=(200, 404))

    def kubectl(self, *args: str, timeout: float = 120) -> str:
        res = subprocess.run([self.binaries["kubectl"], "--kubeconfig", str(self.kubeconfig()),
                              *args], capture_output=True, text=True, timeout=timeout)
        if res.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)}: {res.stderr.strip()[:1000]}")
        return res.stdout

    def compact(self) -> int:
        """`etcdctl compact` at the current revision: older watches get 410 Gone
        (on an apiserver with --watch-cache=false); returns the revision."""
        env = dict(os.environ, ETCDCTL_API="3")
        out = subprocess.run([self.binaries["etcdctl"], f"--endpoints={self.etcd_url}",
                              "endpoint", "status", "-w", "json"], capture_output=True,
                             text=True, timeout=30, env=env, check=True).stdout
        revision = int(json.loads(out)[0]["Status"]["header"]["revision"])
        subprocess.run([self.binaries["etcdctl"], f"--endpoints={self.etcd_url}", "compact",
                        str(revision)], capture_output=True, text=True, timeout=30, env=env,
                       check=True)
        return revision

    # --- CRDs and RBAC ---

    def apply_crds(self) -> None:
        shared = shared_dir()
        assert shared is not None
        files = [str(shared / "crds" / f) for f in CRD_FILES]
        self.kubectl("apply", "--server-side", *sum((["-f", f] for f in files), []))
        # poll, not `kubectl wait`: kubectl 1.32 errors on a CRD with no conditions yet
        names = [yaml.safe_load(Path(f).read_text())["metadata"]["name"] for f in files]
        deadline = time.monotonic() + START_TIMEOUT
        for name in names:
            while True:
                crd = self.api("GET", f"/apis/apiextensions.k8s.io/v1/"
                                      f"customresourcedefinitions/{name}")
                conditions = (crd.get("status") or {}).get("conditions") or []
                if any(c.get("type") == "Established" and c.get("status") == "True"
                       for c in conditions):
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"CRD {name} not established")
                time.sleep(0.1)
        self.crds_applied = True

    def setup_rbac(self) -> None:
        """The chart's RBAC, rendered by helm, for the `exporter` and `exporter-ns` users."""
        for ns in (NAMESPACE, TEAM_NS):
            self.ensure_namespace(ns)
        # TLS Secrets on (the chart's default is off: reading Secrets is a choice)
        secrets = {"certificates": {"tls_secrets": True}}
        docs = rendered_rbac("sloexporter", {"config": {"sources": secrets}}) + rendered_rbac(
            "sloexporter-ns", {"config": {"sources": {
                s: {"namespaces": [TEAM_NS], **secrets.get(s, {})} for s in
                ("argocd", "backups", "certificates", "services")}}})
        path = self.workdir / "rbac.yaml"
        path.write_text(yaml.safe_dump_all(docs))
        self.kubectl("apply", "--server-side", "-f", str(path))


RBAC_KINDS = {"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "ServiceAccount"}


def rendered_rbac(release: str, values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The chart's RBAC documents for a release in namespace `sloexporter`."""
    helm = tool("helm")
    assert helm is not None
    cmd = [helm, "template", release, str(CHART), "--namespace", NAMESPACE]
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
        if values:
            yaml.safe_dump(values, f)
            f.flush()
            cmd += ["-f", f.name]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True).stdout
    return [d for d in yaml.safe_load_all(out) if isinstance(d, dict) and d.get("kind") in
            RBAC_KINDS]


#: plural of each kind the tests write
PLURALS = {"Application": "applications", "CronJob": "cronjobs", "Job": "jobs",
           "Backup": "backups", "Schedule": "schedules", "Certificate": "certificates",
           "Secret": "secrets", "Ingress": "ingresses", "Service": "services",
           "ConfigMap": "configmaps"}


def collection_path(obj: dict[str, Any]) -> str:
    api_version, kind = obj["apiVersion"], obj["kind"]
    base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    ns = obj["metadata"].get("namespace")
    return f"{base}/namespaces/{ns}/{PLURALS[kind]}" if ns else f"{base}/{PLURALS[kind]}"


def api_state(cluster: KubeCluster, source: str, namespace: str | None = None,
              **options: Any) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """The series a fresh `source` renders from a LIST of the API state now (as admin).

    The oracle for exactness: the exporter's long-running state must equal this.
    """
    from prometheus_client.parser import text_string_to_metric_families

    from sloexporter.sources.argocd import ArgoCDSource
    from sloexporter.sources.backups import BackupsSource
    from sloexporter.sources.certificates import (
        SECRETS,
        TLS_SECRET_SELECTOR,
        CertificatesSource,
    )
    from sloexporter.sources.informer import SelfMetrics

    fresh = {"argocd": ArgoCDSource, "backups": BackupsSource,
             "certificates": CertificatesSource}[source](SelfMetrics(), **options)
    for resource in fresh.resources:
        path = resource.path(namespace)
        if resource == SECRETS:
            path += f"?fieldSelector={TLS_SECRET_SELECTOR}"
        for _ in range(100):  # 429 while a new CRD's storage initialises
            status, data = cluster.request("GET", path)
            if status != 429:
                break
            time.sleep(0.1)
        if status == 404:
            continue
        assert status == 200, (path, status, data)
        for obj in data.get("items") or ():
            obj.setdefault("apiVersion", resource.api_version)
            obj.setdefault("kind", resource.kind)
            fresh.apply(resource, "ADDED", obj)
    out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(b"".join(fresh.render()).decode()):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


# --- pytest fixtures ----------------------------------------------------------------------

try:
    import pytest
except ImportError:  # bench scripts import this module without pytest installed
    pytest = None  # type: ignore[assignment]

if pytest is not None:
    @pytest.fixture(scope="session")
    def kube_cluster() -> Iterator[KubeCluster]:
        """etcd + kube-apiserver for the whole session (about 3 s when warm)."""
        missing = KubeCluster.missing_tools()
        if missing:
            from tests.tools import require_tool
            for name in missing:
                require_tool(name)  # fails under the test command, skips otherwise
        cluster = KubeCluster()
        try:
            cluster.start()
            yield cluster
        finally:
            cluster.close()

    @pytest.fixture
    def kube_crds(kube_cluster: KubeCluster) -> KubeCluster:
        """The cluster, with the CRDs from ../shared/crds applied."""
        if not kube_cluster.crds_applied:
            pytest.skip("../shared/crds is absent (only CI and developers have it)")
        return kube_cluster
