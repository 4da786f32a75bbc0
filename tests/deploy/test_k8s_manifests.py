"""deploy/k8s: every manifest is valid against the Kubernetes schemas (kubernetes-validate carries
them; no cluster needed), both as files and as rendered by kustomize, and the rendered stacks
hold what docs/scaling.md promises (probes, headless Services, limits, non-root, read-only root,
GPU limits in the overlay, an HPA).

Rendering: `kubectl kustomize` or `kustomize build` when one is installed; otherwise (and always,
as a cross-check) a small renderer for the subset of kustomize these files use.
"""

from __future__ import annotations

import copy
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
BASE = K8S / "base"
GPU = K8S / "overlays" / "gpu"
KUSTOMIZATIONS = [BASE, GPU]
VERSION = kubernetes_validate.latest_version()
MODEL_BACKENDS = {"fatigue": 8767, "emotion": 8768, "eeg": 8769}


def load_docs(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc is not None]


def kustomization(directory: Path) -> dict[str, Any]:
    return yaml.safe_load((directory / "kustomization.yaml").read_text(encoding="utf-8"))


# ---- a renderer for the kustomize subset used here --------------------------------------------


def _merge(base: Any, patch: Any) -> Any:
    """Strategic merge as kustomize does it for these patches: maps deep-merge, lists of named
    maps (containers, env, ports) merge by name, other lists are replaced."""
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = dict(base)
        for key, value in patch.items():
            merged[key] = _merge(base[key], value) if key in base else copy.deepcopy(value)
        return merged
    named = isinstance(base, list) and isinstance(patch, list)
    named = named and all(isinstance(item, dict) and "name" in item for item in [*base, *patch])
    if named:
        merged = [copy.deepcopy(item) for item in base]
        index = {item["name"]: i for i, item in enumerate(merged)}
        for item in patch:
            if item["name"] in index:
                merged[index[item["name"]]] = _merge(merged[index[item["name"]]], item)
            else:
                merged.append(copy.deepcopy(item))
        return merged
    return copy.deepcopy(patch)


def render_fallback(directory: Path) -> list[dict[str, Any]]:
    spec = kustomization(directory)
    known = {"apiVersion", "kind", "namespace", "labels", "resources", "images", "patches"}
    assert set(spec) <= known, f"{directory}: kustomization uses {set(spec) - known}; extend the renderer"
    docs: list[dict[str, Any]] = []
    for entry in spec.get("resources", []):
        target = (directory / entry).resolve()
        docs.extend(render_fallback(target) if target.is_dir() else load_docs(target))
    for patch_entry in spec.get("patches", []):
        for patch in load_docs(directory / patch_entry["path"]):
            matches = [
                i
                for i, doc in enumerate(docs)
                if doc["kind"] == patch["kind"] and doc["metadata"]["name"] == patch["metadata"]["name"]
            ]
            assert len(matches) == 1, f"patch {patch_entry['path']} matches {len(matches)} resources"
            docs[matches[0]] = _merge(docs[matches[0]], patch)
    if "namespace" in spec:
        for doc in docs:
            if doc["kind"] != "Namespace":
                doc["metadata"]["namespace"] = spec["namespace"]
    for label_set in spec.get("labels", []):
        for doc in docs:
            doc["metadata"].setdefault("labels", {}).update(label_set["pairs"])
    for image in spec.get("images", []):
        for doc in docs:
            for container in doc.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
                if container["image"].split(":")[0] == image["name"]:
                    container["image"] = f"{image.get('newName', image['name'])}:{image['newTag']}"
    return docs


def render_tool(directory: Path) -> list[dict[str, Any]] | None:
    """kustomize's own rendering, when a kubectl or kustomize binary is installed (CI runners have kubectl)."""
    if shutil.which("kubectl"):
        cmd = ["kubectl", "kustomize", str(directory)]
    elif shutil.which("kustomize"):
        cmd = ["kustomize", "build", str(directory)]
    else:
        return None
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stderr}"
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc is not None]


def rendered(directory: Path) -> list[dict[str, Any]]:
    return render_tool(directory) or render_fallback(directory)


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == kind}


# ---- files -------------------------------------------------------------------------------------


def test_every_file_is_listed_and_every_listed_file_exists() -> None:
    for directory in KUSTOMIZATIONS:
        spec = kustomization(directory)
        listed = {entry for entry in spec.get("resources", []) if not (directory / entry).is_dir()}
        listed |= {entry["path"] for entry in spec.get("patches", [])}
        present = {path.name for path in directory.glob("*.yaml")} - {"kustomization.yaml"}
        assert listed == present, f"{directory.relative_to(REPO)}: listed {sorted(listed)}, present {sorted(present)}"


@pytest.mark.parametrize("path", sorted(p for p in BASE.glob("*.yaml") if p.name != "kustomization.yaml"), ids=str)
def test_each_base_manifest_is_valid(path: Path) -> None:
    for doc in load_docs(path):
        kubernetes_validate.validate(doc, VERSION, strict=True)


@pytest.mark.parametrize("directory", KUSTOMIZATIONS, ids=lambda d: str(d.relative_to(K8S)))
def test_rendered_manifests_are_valid(directory: Path) -> None:
    docs = rendered(directory)
    assert docs
    for doc in docs:
        kubernetes_validate.validate(doc, VERSION, strict=True)
    fallback = render_fallback(directory)
    for doc in fallback:
        kubernetes_validate.validate(doc, VERSION, strict=True)
    # The fallback renderer agrees with kustomize on what is deployed.
    names = sorted((doc["kind"], doc["metadata"]["name"]) for doc in docs)
    assert names == sorted((doc["kind"], doc["metadata"]["name"]) for doc in fallback)


def test_validation_catches_a_mistake() -> None:
    deployment = copy.deepcopy(by_kind(render_fallback(BASE), "Deployment")["eeg"])
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}  # typo
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, VERSION, strict=True)


# ---- what the stack promises -------------------------------------------------------------------


@pytest.mark.parametrize("directory", KUSTOMIZATIONS, ids=lambda d: str(d.relative_to(K8S)))
def test_deployments_are_probed_limited_non_root_and_read_only(directory: Path) -> None:
    deployments = by_kind(rendered(directory), "Deployment")
    assert set(deployments) == {"main-backend", *MODEL_BACKENDS}
    for name, deployment in deployments.items():
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["automountServiceAccountToken"] is False, name
        (container,) = pod["containers"]
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz", name
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz", name
        resources = container["resources"]
        assert {"cpu", "memory"} <= set(resources["requests"]) and {"cpu", "memory"} <= set(resources["limits"]), name
        security = container["securityContext"]
        assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False, name
        assert security["capabilities"]["drop"] == ["ALL"], name
        assert {mount["mountPath"] for mount in container["volumeMounts"]} == {"/tmp"}, name
        port = container["ports"][0]["containerPort"]
        assert port == MODEL_BACKENDS.get(name, 8765), name


def test_model_backends_have_headless_services_the_gateway_resolves() -> None:
    docs = rendered(BASE)
    services = by_kind(docs, "Service")
    gateway = by_kind(docs, "Deployment")["main-backend"]["spec"]["template"]["spec"]["containers"][0]
    env = {item["name"]: item["value"] for item in gateway["env"]}
    for name, port in MODEL_BACKENDS.items():
        service = services[name]["spec"]
        assert service["clusterIP"] == "None", f"{name}: the gateway needs one DNS record per pod"
        assert service["ports"][0]["port"] == port
        prefix = f"VIGIL_GATEWAY_BACKENDS__{name.upper()}__"
        assert env[f"{prefix}HOST"] == name and env[f"{prefix}PORT"] == str(port)
        assert float(env[f"{prefix}RESOLVE_INTERVAL"]) > 0
    assert services["main-backend"]["spec"].get("clusterIP") != "None"
    assert services["main-backend"]["spec"]["ports"][0]["port"] == 8765


def test_hpa_targets_an_existing_deployment() -> None:
    docs = rendered(BASE)
    hpas = by_kind(docs, "HorizontalPodAutoscaler")
    assert hpas
    deployments = by_kind(docs, "Deployment")
    for hpa in hpas.values():
        target = hpa["spec"]["scaleTargetRef"]
        assert target["kind"] == "Deployment" and target["name"] in deployments
        assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]


def test_gpu_overlay_gives_every_model_backend_a_gpu_and_cuda() -> None:
    deployments = by_kind(rendered(GPU), "Deployment")
    for name in MODEL_BACKENDS:
        container = deployments[name]["spec"]["template"]["spec"]["containers"][0]
        assert container["resources"]["limits"]["nvidia.com/gpu"] == 1, name
        assert "cuda" in {item.get("value") for item in container["env"]}, name
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"  # base kept under the patch
    gateway = deployments["main-backend"]["spec"]["template"]["spec"]["containers"][0]
    assert "nvidia.com/gpu" not in gateway["resources"]["limits"]
