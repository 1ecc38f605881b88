"""The container image builds here, with no daemon and no registry, and runs."""

from __future__ import annotations

import json
import os
import subprocess
import uuid

from sloexporter import __version__
from tests.tools import ROOT, require_tool

ENV = dict(os.environ, STORAGE_DRIVER="vfs")


def _buildah(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([require_tool("buildah"), *args], capture_output=True, text=True,
                          timeout=timeout, env=ENV)


def test_build_image_sh_builds_an_image_that_runs_sloexporter():
    require_tool("buildah")
    require_tool("mmdebstrap")
    image = f"localhost/sloexporter-test:{uuid.uuid4().hex[:8]}"
    build = subprocess.run(["bash", "scripts/build-image.sh", image], cwd=ROOT, env=ENV,
                           capture_output=True, text=True, timeout=1800)
    assert build.returncode == 0, build.stdout + build.stderr[-3000:]
    assert build.stdout.strip() == image
    try:
        config = json.loads(_buildah("inspect", "--type", "image", image).stdout)["OCIv1"]
        assert config["config"]["User"] == "65532:65532"  # non-root, as the chart requires
        assert config["config"]["Entrypoint"] == ["/opt/venv/bin/sloexporter"]
        assert config["config"]["Cmd"] == ["serve"]
        assert [p for p in config["config"]["ExposedPorts"] if p.startswith("9469")]
        ctr = _buildah("from", "--quiet", image).stdout.strip()
        try:
            run = _buildah("run", "--isolation", "chroot", ctr, "--", "sloexporter",
                           "--version")
            assert run.returncode == 0, run.stderr
            assert run.stdout.strip() == f"sloexporter {__version__}"
            # the image's Python has the whole generator: init validates in the image
            spec = _buildah("run", "--isolation", "chroot", ctr, "--", "sloexporter", "init",
                            "shop")
            assert spec.returncode == 0 and "service: shop" in spec.stdout, spec.stderr
        finally:
            _buildah("rm", ctr)
    finally:
        _buildah("rmi", "--force", image)


def test_the_chart_default_image_is_what_the_build_makes():
    """A user builds the image (none is published): the chart's default names it."""
    import re

    import yaml

    values = yaml.safe_load((ROOT / "helm" / "sloexporter" / "values.yaml").read_text())
    chart = yaml.safe_load((ROOT / "helm" / "sloexporter" / "Chart.yaml").read_text())
    script = (ROOT / "scripts" / "build-image.sh").read_text()
    [default] = re.findall(r'IMAGE="\$\{1:-([^:}]+):\$VERSION\}"', script)
    assert values["image"]["repository"] == default == "localhost/sloexporter"
    assert values["image"]["tag"] == "" and chart["appVersion"] == __version__
    install = (ROOT / "docs" / "install.md").read_text()
    assert "bash scripts/build-image.sh" in install
    assert f"docker build -t {default}:{__version__} ." in install
