"""examples/deploy: the Kubernetes manifests parse and say what docs/operations.md promises; the systemd units pass
``systemd-analyze verify`` without a warning (where systemd-analyze exists) and start ``serve`` with a drain."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

yaml = pytest.importorskip("yaml")

pytestmark = pytest.mark.timeout(60)

DEPLOY = Path(__file__).resolve().parents[3] / "examples" / "deploy"


def manifests() -> dict[str, Any]:
    documents = list(yaml.safe_load_all((DEPLOY / "kubernetes" / "dispatcher.yaml").read_text()))
    return {doc["kind"]: doc for doc in documents}


def test_the_kubernetes_manifests_parse_and_hold_together() -> None:
    found = manifests()
    assert set(found) == {"ConfigMap", "Deployment", "Service", "PodDisruptionBudget"}
    deployment, service, budget = found["Deployment"], found["Service"], found["PodDisruptionBudget"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"] == labels == budget["spec"]["selector"]["matchLabels"]
    assert service["spec"]["clusterIP"] == "None"  # headless: the name resolves to every ready pod
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
    args = container["args"]
    drain = float(args[args.index("--drain-timeout") + 1])
    assert pod["terminationGracePeriodSeconds"] > drain + 5  # preStop sleep + drain before SIGKILL
    assert "--metrics-address" in args
    secrets = {volume["secret"]["secretName"] for volume in pod["volumes"] if "secret" in volume}
    assert secrets == {"dispatcher-hostcert", "grid-ca"}
    assert "site.cfg" in found["ConfigMap"]["data"]


def test_the_configuration_in_the_examples_parses() -> None:
    from rpcframework.config.loaders import load_cfg_text

    site = load_cfg_text((DEPLOY / "systemd" / "site.cfg").read_text())
    assert len(site.get_str("/Systems/DataManagement/URLs/Dispatcher").split(",")) == 3
    in_pod = load_cfg_text(manifests()["ConfigMap"]["data"]["site.cfg"])
    assert in_pod.get_str("/DIRAC/Security/CertFile") == "/etc/grid-security/hostcert/tls.crt"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed here")
def test_the_systemd_unit_verifies_without_a_warning(tmp_path: Path) -> None:
    unit = (DEPLOY / "systemd" / "rpcframework-dispatcher@.service").read_text()
    assert "--drain-timeout" in unit and "KillSignal=SIGTERM" in unit
    # verify wants the program to exist: point it at one that does; an instance name for the template.
    instance = tmp_path / "rpcframework-dispatcher@9135.service"
    instance.write_text(unit.replace("/opt/rpcframework/.venv/bin/rpcframework", shutil.which("true") or "/bin/true"))
    done = subprocess.run(
        ["systemd-analyze", "verify", str(instance)], capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "" and done.stderr.strip() == "", done.stdout + done.stderr
