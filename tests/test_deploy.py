"""The files in deploy/: they parse, core Kubernetes objects match their schemas, ports stay
inside the cluster, and every corpus-scanner command they run exists in the CLI parser.

Nothing is built or applied: the image build and the clusters need a registry and a cloud.
"""

import argparse
import json
import pathlib
import re
import shlex

import pytest
import yaml

from scanner.cli import build_parser

DEPLOY = pathlib.Path(__file__).resolve().parents[1] / "deploy"
MANIFESTS = sorted([*DEPLOY.glob("kuberay/*.yaml"), *DEPLOY.glob("kubernetes/*.yaml")])
LAUNCHER = DEPLOY / "cluster-launcher" / "aws.yaml"
# The oldest Kubernetes release whose schemas the manifests are checked against; CronJob.spec.timeZone
# is stable from 1.27.
KUBERNETES_VERSION = "1.30.0"
RAY_PORTS = (6379, 8265, 10001)


def documents(path: pathlib.Path) -> list[dict]:
    return [document for document in yaml.safe_load_all(path.read_text(encoding="utf-8")) if document is not None]


def manifest_objects() -> list[tuple[str, dict]]:
    return [(f"{path.relative_to(DEPLOY)}:{item['kind']}", item) for path in MANIFESTS for item in documents(path)]


def core_objects() -> list[tuple[str, dict]]:
    return [(name, item) for name, item in manifest_objects() if not item["apiVersion"].startswith("ray.io/")]


def kuberay_objects() -> list[tuple[str, dict]]:
    return [(name, item) for name, item in manifest_objects() if item["apiVersion"].startswith("ray.io/")]


def walk(node):
    """Yield every mapping inside a parsed YAML document."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def scanner_commands() -> list[tuple[str, list[str]]]:
    """Every corpus-scanner command line that a manifest, the launcher or the Dockerfile runs, without the program."""
    commands = []
    for name, item in manifest_objects():
        for mapping in walk(item):
            entrypoint = mapping.get("entrypoint")
            if isinstance(entrypoint, str) and shlex.split(entrypoint)[0] == "corpus-scanner":
                commands.append((f"{name} entrypoint", shlex.split(entrypoint)[1:]))
            for container in mapping.get("containers", []):
                if "corpus-scanner" not in container.get("image", ""):
                    continue
                command = container.get("command") or []
                if command[:1] == ["corpus-scanner"]:
                    commands.append((f"{name} {container['name']}", command[1:] + container.get("args", [])))
                elif not command and "args" in container:
                    # The image's entrypoint is corpus-scanner.
                    commands.append((f"{name} {container['name']}", container["args"]))

    for text in json.dumps(documents(LAUNCHER)).split('"'):
        for line in re.split(r"[;&|]", text):
            words = shlex.split(line) if "corpus-scanner " in line else []
            if words[:1] == ["corpus-scanner"]:
                commands.append((f"cluster-launcher/aws.yaml: {line.strip()}", words[1:]))

    dockerfile = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    cmd = json.loads(re.search(r"^CMD (\[.*\])$", dockerfile, re.MULTILINE).group(1))
    commands.append(("Dockerfile CMD", cmd))
    return commands


def subcommand_names(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def test_manifests_found():
    names = {path.name for path in MANIFESTS}

    assert {"raycluster.yaml", "rayjob.yaml", "monitor-cronjob.yaml"} <= names
    assert LAUNCHER.is_file()


@pytest.mark.parametrize("path", [*MANIFESTS, LAUNCHER], ids=lambda path: str(path.relative_to(DEPLOY)))
def test_yaml_parses(path):
    parsed = documents(path)

    assert parsed
    assert all(isinstance(item, dict) for item in parsed)


# kubernetes-validate has no schemas for KubeRay's custom resources, which test_kuberay_object_shape checks.
@pytest.mark.parametrize(("name", "item"), core_objects(), ids=[name for name, _ in core_objects()])
def test_core_object_matches_schema(name, item):
    kubernetes_validate = pytest.importorskip("kubernetes_validate", reason="the test extras install kubernetes-validate")

    # strict rejects fields that the schema does not define, such as a misspelled key.
    kubernetes_validate.validate(item, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize(("name", "item"), kuberay_objects(), ids=[name for name, _ in kuberay_objects()])
def test_kuberay_object_shape(name, item):
    spec = item["spec"]["rayClusterSpec"] if item["kind"] == "RayJob" else item["spec"]

    assert item["apiVersion"] == "ray.io/v1"
    assert item["kind"] in ("RayCluster", "RayJob")
    assert spec["headGroupSpec"]["template"]["spec"]["containers"]
    assert all(group["template"]["spec"]["containers"] for group in spec["workerGroupSpecs"])


def test_schema_rejects_misspelled_field():
    kubernetes_validate = pytest.importorskip("kubernetes_validate", reason="the test extras install kubernetes-validate")
    cronjob = next(item for _, item in core_objects() if item["kind"] == "CronJob")
    broken = {**cronjob, "spec": {**cronjob["spec"], "schedul": "0 3 * * *"}}

    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_services_cluster_internal():
    kinds = []
    for name, item in manifest_objects():
        for mapping in walk(item):
            if "serviceType" in mapping:
                kinds.append((name, mapping["serviceType"]))
        if item["kind"] == "Service":
            kinds.append((name, item["spec"].get("type", "ClusterIP")))

    assert kinds
    assert [kind for kind in kinds if kind[1] != "ClusterIP"] == []


def test_launcher_keeps_ray_ports_closed():
    config = documents(LAUNCHER)[0]
    rules = config["provider"]["security_group"]["IpPermissions"]
    head_start = " ".join(config["head_start_ray_commands"])

    opened = [port for rule in rules for port in RAY_PORTS if rule["FromPort"] <= port <= rule["ToPort"]]
    assert opened == []
    assert "--dashboard-host=0.0.0.0" not in head_start
    assert "--dashboard-host=127.0.0.1" in head_start


def test_dockerfile_entrypoint():
    dockerfile = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")

    assert re.search(r"^FROM python:3\.11-slim$", dockerfile, re.MULTILINE)
    assert re.search(r"--constraint constraints\.txt", dockerfile)
    assert json.loads(re.search(r"^ENTRYPOINT (\[.*\])$", dockerfile, re.MULTILINE).group(1)) == ["corpus-scanner"]


def test_commands_found():
    sources = [source for source, _ in scanner_commands()]

    assert any("RayJob" in source for source in sources)
    assert any("CronJob" in source for source in sources)


@pytest.mark.parametrize(("source", "command"), scanner_commands(), ids=[source for source, _ in scanner_commands()])
def test_command_exists_in_cli(source, command):
    parser = build_parser()
    names = subcommand_names(parser)
    if command[:1] == ["monitor"] and "monitor" not in names:
        pytest.skip(f"{source}: the `monitor` command is not in the CLI parser yet")
    if command[:1] and not command[0].startswith("-"):
        assert command[0] in names, f"{source}: no subcommand {command[0]!r}"

    try:
        parser.parse_args(command)
    except SystemExit as exit_request:
        # --help exits with 0; an unknown subcommand or option exits with 2.
        assert exit_request.code == 0, f"{source}: corpus-scanner rejects {shlex.join(command)}"
