"""Offline checks of ``deploy/k8s``: no cluster, no kubectl, only the YAML and our own parsers.

Each test names one property a manifest can break without YAML noticing: a Service or budget
that selects no pod, a probe on a port the container does not open, a flag our argparse does
not know, a grace period shorter than the node's drain, a dashboard or alert naming a metric
the code does not export. Schemas come from the kubernetes-validate package, which bundles the
JSON schemas of many Kubernetes releases; it has none for the Prometheus Operator's custom
resources (PodMonitor, PrometheusRule), which are checked field by field here instead.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import all_versions
from prometheus_client import generate_latest

from control_plane.__main__ import parse_args as control_plane_args
from control_plane.telemetry import ControlPlaneMetrics
from inference_node.config_args import from_args as node_args
from inference_node.telemetry.metrics import NodeMetrics
from tests.promql import exported_names, metric_names

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
NAMESPACE = "yolofleet"
CLUSTER_SCOPED = frozenset({"Namespace"})
WORKLOAD_KINDS = frozenset({"Deployment", "StatefulSet", "DaemonSet"})
NODE = "inference-node"
CONTROL_PLANE = "control-plane"
PROGRAMS: Mapping[tuple[str, ...], str] = {
    ("inference-node",): NODE,
    ("python", "-m", "inference_node"): NODE,
    ("control-plane",): CONTROL_PLANE,
    ("python", "-m", "control_plane"): CONTROL_PLANE,
}
FIELD_PLACEHOLDERS = {"metadata.name": "yolofleet-node-zone-a-abc12", "status.podIP": "10.0.0.7"}
WRITABLE_ENV = ("YOLOFLEET_CACHE", "YOLO_CONFIG_DIR", "MPLCONFIGDIR", "TORCH_HOME")
GPU = "nvidia.com/gpu"
MONITORING_API = "monitoring.coreos.com/v1"
CUSTOM_KINDS = frozenset({"PodMonitor", "PrometheusRule"})
"""Prometheus Operator resources: no bundled schema, checked by the tests below instead."""
REQUIRED_ALERTS = frozenset(
    {
        "YolofleetRolloutRolledBack",
        "YolofleetRolloutStuck",
        "YolofleetNodeFailedToLoad",
        "YolofleetNoLeader",
        "YolofleetConsulUnreachable",
    }
)
DURATION = re.compile(r"(\d+(ms|s|m|h|d|w|y))+")


@dataclass(frozen=True, slots=True, kw_only=True)
class Doc:
    """One YAML document of one manifest file."""

    file: str
    body: Mapping[str, Any]

    @property
    def kind(self) -> str:
        return str(self.body.get("kind", ""))

    @property
    def name(self) -> str:
        return str(self.body.get("metadata", {}).get("name", ""))

    def __str__(self) -> str:
        return f"{self.file}: {self.kind}/{self.name}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Container:
    """A container of a workload's pod template, with what the test derives from it."""

    workload: Doc
    spec: Mapping[str, Any]
    pod: Mapping[str, Any]

    @property
    def name(self) -> str:
        return f"{self.workload}/{self.spec['name']}"

    @property
    def program(self) -> str | None:
        full = tuple(self.spec.get("command", ())) + tuple(self.spec.get("args", ()))
        for prefix, program in PROGRAMS.items():
            if full[: len(prefix)] == prefix:
                return program
        return None

    def argv(self) -> list[str]:
        """Arguments after the program, ``$(VAR)`` expanded the way the kubelet does."""
        full = list(self.spec.get("command", ())) + list(self.spec.get("args", ()))
        prefix = next(p for p, program in PROGRAMS.items() if program == self.program)
        env = self.env()
        return [_expand(arg, env) for arg in full[len(prefix) :]]

    def env(self) -> dict[str, str]:
        values: dict[str, str] = {}
        for source in self.spec.get("envFrom", ()):
            values.update(configmaps().get(source["configMapRef"]["name"], {}))
        for var in self.spec.get("env", ()):
            field = var.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
            values[var["name"]] = FIELD_PLACEHOLDERS.get(field, "x") if field else var["value"]
        return values

    def ports(self) -> set[tuple[str | int, str]]:
        """Each declared port as (number, protocol) and (name, protocol)."""
        found: set[tuple[str | int, str]] = set()
        for port in self.spec.get("ports", ()):
            protocol = port.get("protocol", "TCP")
            found.add((port["containerPort"], protocol))
            if "name" in port:
                found.add((port["name"], protocol))
        return found


def _expand(arg: str, env: Mapping[str, str]) -> str:
    return re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), arg)


@functools.cache
def manifest_files() -> tuple[Path, ...]:
    return tuple(sorted(p for p in K8S.glob("*.y*ml") if p.name != "kustomization.yaml"))


@functools.cache
def kustomization() -> Mapping[str, Any]:
    loaded: Mapping[str, Any] = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    return loaded


@functools.cache
def docs() -> tuple[Doc, ...]:
    found = []
    for path in manifest_files():
        for body in yaml.safe_load_all(path.read_text()):
            if body is not None:
                found.append(Doc(file=path.name, body=body))
    return tuple(found)


@functools.cache
def configmaps() -> Mapping[str, Mapping[str, str]]:
    return {d.name: d.body.get("data", {}) for d in docs() if d.kind == "ConfigMap"}


def workloads() -> list[Doc]:
    return [d for d in docs() if d.kind in WORKLOAD_KINDS]


def pod_labels(workload: Doc) -> Mapping[str, str]:
    labels: Mapping[str, str] = workload.body["spec"]["template"]["metadata"]["labels"]
    return labels


def containers(program: str | None = None) -> list[Container]:
    found = []
    for workload in workloads():
        pod = workload.body["spec"]["template"]["spec"]
        for spec in (*pod.get("initContainers", ()), *pod["containers"]):
            container = Container(workload=workload, spec=spec, pod=pod)
            if program is None or container.program == program:
                found.append(container)
    return found


def ours() -> list[Container]:
    """Containers of the yolofleet image (kustomize rewrites its name, so match on it)."""
    return [c for c in containers() if c.spec["image"].split(":")[0] == "yolofleet"]


def matches(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """A LabelSelector (matchLabels/matchExpressions) or a Service's plain map, against labels."""
    if "matchLabels" not in selector and "matchExpressions" not in selector:
        selector = {"matchLabels": selector}
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    return all(_holds(e, labels) for e in selector.get("matchExpressions", ()))


def _holds(expression: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    key, values = expression["key"], expression.get("values", ())
    match expression["operator"]:
        case "In":
            return labels.get(key) in values
        case "NotIn":
            return labels.get(key) not in values
        case "Exists":
            return key in labels
        case "DoesNotExist":
            return key not in labels
    raise ValueError(f"unknown selector operator in {expression}")


def selected(selector: Mapping[str, Any]) -> list[Container]:
    return [c for c in containers() if matches(selector, pod_labels(c.workload))]


def parse_node(container: Container) -> Any:
    return _parsed(container, node_args)


def parse_control_plane(container: Container) -> Any:
    return _parsed(container, control_plane_args)


def _parsed(container: Container, parse: Callable[[list[str]], Any]) -> Any:
    argv = container.argv()
    try:
        return parse(argv)
    except SystemExit as exc:  # argparse printed why to stderr, which pytest shows
        pytest.fail(f"{container.name}: the real parser rejected {argv} (exit {exc.code})")
    except ValueError as exc:
        pytest.fail(f"{container.name}: {exc}")


def prestop_sleep_s(container: Container) -> float:
    pre_stop = container.spec.get("lifecycle", {}).get("preStop", {})
    if "sleep" in pre_stop:
        return float(pre_stop["sleep"]["seconds"])
    command = pre_stop.get("exec", {}).get("command", [])
    return float(command[1]) if command[:1] == ["sleep"] else 0.0


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    lines = (line.strip() for line in text.splitlines())
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1])
        for line in lines
        if line and not line.startswith("#")
    ]


# Files, names and namespaces.


def test_kustomization_lists_exactly_the_manifest_files() -> None:
    listed = set(kustomization()["resources"])

    on_disk = {p.name for p in manifest_files()}

    assert listed == on_disk, f"unlisted: {on_disk - listed}, missing: {listed - on_disk}"


def test_every_document_has_api_version_kind_and_name() -> None:
    incomplete = [
        f"{d.file}: {d.body.get('kind')}"
        for d in docs()
        if not (d.body.get("apiVersion") and d.kind and d.name)
    ]

    assert docs()
    assert incomplete == []


def test_every_object_lives_in_the_yolofleet_namespace() -> None:
    misplaced = [
        str(d)
        for d in docs()
        if d.kind not in CLUSTER_SCOPED and d.body["metadata"].get("namespace") != NAMESPACE
    ]

    assert kustomization()["namespace"] == NAMESPACE
    assert misplaced == []


def test_object_names_are_unique_per_kind() -> None:
    keys = [(d.kind, d.name) for d in docs()]

    assert len(keys) == len(set(keys)), sorted(k for k in keys if keys.count(k) > 1)


@pytest.mark.parametrize("version", sorted({all_versions()[0], all_versions()[-1]}))
def test_documents_match_the_kubernetes_schema(version: str) -> None:
    errors = []

    for doc in docs():
        if doc.kind in CUSTOM_KINDS:
            continue
        try:
            kubernetes_validate.validate(dict(doc.body), version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"{doc}: {exc.message} at {list(exc.absolute_path)}")

    assert errors == []


# Selectors and ports.


def test_workload_selectors_match_their_own_pod_templates() -> None:
    mismatched = [
        str(w) for w in workloads() if not matches(w.body["spec"]["selector"], pod_labels(w))
    ]

    assert workloads()
    assert mismatched == []


def test_service_and_budget_selectors_select_some_workload() -> None:
    def unmatched() -> Iterator[str]:
        for doc in docs():
            if doc.kind in ("Service", "PodDisruptionBudget") and not selected(
                doc.body["spec"]["selector"]
            ):
                yield str(doc)

    assert list(unmatched()) == []


def test_service_target_ports_exist_in_every_selected_container_group() -> None:
    def missing() -> Iterator[str]:
        for service in (d for d in docs() if d.kind == "Service"):
            pods: dict[str, set[tuple[str | int, str]]] = {}
            for container in selected(service.body["spec"]["selector"]):
                pods.setdefault(str(container.workload), set()).update(container.ports())
            for port in service.body["spec"]["ports"]:
                target = (port.get("targetPort", port["port"]), port.get("protocol", "TCP"))
                for workload, ports in pods.items():
                    if target not in ports:
                        yield f"{service} targetPort {target} is not a port of {workload}"

    assert list(missing()) == []


def test_probe_ports_exist_in_their_container() -> None:
    def missing() -> Iterator[str]:
        for container in containers():
            for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
                probe = container.spec.get(kind, {})
                for handler in ("grpc", "tcpSocket", "httpGet"):
                    if (
                        handler in probe
                        and (probe[handler]["port"], "TCP") not in container.ports()
                    ):
                        yield f"{container.name} {kind} port {probe[handler]['port']}"

    assert list(missing()) == []


def test_network_policies_select_workloads_and_open_their_ports() -> None:
    def problems() -> Iterator[str]:
        for policy in (d for d in docs() if d.kind == "NetworkPolicy"):
            spec = policy.body["spec"]
            own = selected(spec["podSelector"])
            if spec["podSelector"] and not own:
                yield f"{policy}: podSelector selects no workload"
            for direction, peers_key in (("ingress", "from"), ("egress", "to")):
                for rule in spec.get(direction, ()):
                    yield from _rule_problems(policy, direction, rule, own, rule.get(peers_key, ()))

    assert list(problems()) == []


def _rule_problems(
    policy: Doc,
    direction: str,
    rule: Mapping[str, Any],
    own: list[Container],
    peers: Sequence[Mapping[str, Any]],
) -> Iterator[str]:
    """Same-namespace peers must exist; ports must be open on the pods that receive them."""
    local = [p["podSelector"] for p in peers if "podSelector" in p and "namespaceSelector" not in p]
    for selector in local:
        if not selected(selector):
            yield f"{policy} {direction}: peer {selector} selects no workload"
    receivers = own if direction == "ingress" else [c for s in local for c in selected(s)]
    if not receivers:
        return
    open_ports = set().union(*(c.ports() for c in receivers))
    for port in rule.get("ports", ()):
        if (port["port"], port.get("protocol", "TCP")) not in open_ports:
            yield f"{policy} {direction}: port {port['port']} is opened by no receiving pod"


# Our programs and their flags.


def test_every_yolofleet_container_runs_a_known_program() -> None:
    unknown = [c.name for c in ours() if c.program is None]

    assert {c.program for c in ours()} == {NODE, CONTROL_PLANE}
    assert unknown == []


@pytest.mark.parametrize("container", containers(NODE), ids=lambda c: c.workload.name)
def test_node_flags_are_accepted_by_the_real_parser(container: Container) -> None:
    config = parse_node(container)

    assert config.fleet is not None, "a Kubernetes node runs in fleet mode (--group)"
    assert {(config.port, "TCP"), (config.metrics_port, "TCP")} <= container.ports()


@pytest.mark.parametrize("container", containers(CONTROL_PLANE), ids=lambda c: c.workload.name)
def test_control_plane_flags_are_accepted_by_the_real_parser(container: Container) -> None:
    config = parse_control_plane(container)

    assert {(config.port, "TCP"), (config.artifact_port, "TCP")} <= container.ports()
    assert config.host == "0.0.0.0", "bind every interface, or the Service cannot reach it"
    assert config.artifact_url, "without --artifact-url, URIs name the pod's unresolvable hostname"


@pytest.mark.parametrize("container", containers(CONTROL_PLANE), ids=lambda c: c.workload.name)
def test_artifact_url_names_the_control_plane_service_port(container: Container) -> None:
    urls = [a.split("=", 1)[1] for a in container.argv() if a.startswith("--artifact-url=")]
    services = {d.name: d for d in docs() if d.kind == "Service"}

    assert len(urls) == 1, "give --artifact-url=URL once"
    match = re.fullmatch(r"http://([a-z0-9-]+)\.yolofleet\.svc:(\d+)", urls[0])
    assert match, f"{urls[0]} is not http://SERVICE.yolofleet.svc:PORT"
    service = services[match.group(1)]
    assert any(p["port"] == int(match.group(2)) for p in service.body["spec"]["ports"])
    assert service.body["spec"]["selector"].items() <= pod_labels(container.workload).items()


def test_argument_variables_are_defined_in_the_container_env() -> None:
    def undefined() -> Iterator[str]:
        for container in containers():
            env = container.env()
            for arg in (*container.spec.get("command", ()), *container.spec.get("args", ())):
                for name in re.findall(r"\$\((\w+)\)", arg):
                    if name not in env:
                        yield f"{container.name}: $({name}) in {arg!r}"
            for source in container.spec.get("envFrom", ()):
                if source["configMapRef"]["name"] not in configmaps():
                    yield f"{container.name}: no ConfigMap {source['configMapRef']['name']}"

    assert list(undefined()) == []


# Inference nodes.


def test_inference_pods_request_exactly_one_gpu() -> None:
    nodes = containers(NODE)

    assert nodes
    for container in nodes:
        resources = container.spec["resources"]
        assert str(resources["requests"][GPU]) == "1", container.name
        assert str(resources["limits"][GPU]) == "1", container.name
        tolerated = {t.get("key") for t in container.pod.get("tolerations", ())}
        assert GPU in tolerated, f"{container.name} does not tolerate the GPU taint"
    for container in containers(CONTROL_PLANE):
        assert GPU not in container.spec.get("resources", {}).get("limits", {})


def test_node_threads_fit_the_cpu_request() -> None:
    for container in containers(NODE):
        threads = parse_node(container).threads
        cpu = str(container.spec["resources"]["requests"]["cpu"])
        cores = float(cpu[:-1]) / 1000 if cpu.endswith("m") else float(cpu)

        assert threads is not None, f"{container.name}: give --threads, or torch uses every core"
        assert threads <= cores, f"{container.name}: --threads={threads} > {cpu} CPUs requested"


def test_node_grace_period_outlasts_prestop_and_drain() -> None:
    for container in containers(NODE):
        drain_s = parse_node(container).drain_timeout_s
        grace_s = container.pod.get("terminationGracePeriodSeconds", 30)

        assert grace_s > prestop_sleep_s(container) + drain_s, container.name


def test_node_is_ready_on_grpc_health_of_the_detect_port() -> None:
    for container in containers(NODE):
        config = parse_node(container)

        assert container.spec["readinessProbe"]["grpc"]["port"] == config.port
        assert "grpc" not in container.spec["livenessProbe"], (
            "liveness on grpc health would restart nodes that wait for their first model"
        )


def test_node_identity_comes_from_the_pod() -> None:
    for container in containers(NODE):
        fields = {
            v["name"]: v["valueFrom"]["fieldRef"]["fieldPath"]
            for v in container.spec.get("env", ())
            if "fieldRef" in v.get("valueFrom", {})
        }
        raw = dict(a.split("=", 1) for a in container.spec["args"] if "=" in a)
        node_id = re.fullmatch(r"\$\((\w+)\)", raw["--node-id"])
        advertise = re.fullmatch(r"\$\((\w+)\):(\d+)", raw["--advertise"])

        assert node_id, "--node-id=$(VAR) from the downward API"
        assert fields.get(node_id.group(1)) == "metadata.name"
        assert advertise, "--advertise=$(VAR):PORT from the downward API"
        assert fields.get(advertise.group(1)) == "status.podIP"
        assert int(advertise.group(2)) == parse_node(container).port


def test_metrics_port_is_annotated_for_prometheus() -> None:
    for container in containers(NODE):
        annotations = container.workload.body["spec"]["template"]["metadata"]["annotations"]

        assert annotations["prometheus.io/scrape"] == "true"
        assert int(annotations["prometheus.io/port"]) == parse_node(container).metrics_port


# Pod security and the image.


def test_pods_meet_the_restricted_pod_security_standard() -> None:
    def violations() -> Iterator[str]:
        for container in containers():
            pod_ctx = container.pod.get("securityContext", {})
            ctx = {**pod_ctx, **container.spec.get("securityContext", {})}
            if ctx.get("seccompProfile", {}).get("type") != "RuntimeDefault":
                yield f"{container.name}: seccompProfile is not RuntimeDefault"
            if ctx.get("runAsNonRoot") is not True or ctx.get("runAsUser") == 0:
                yield f"{container.name}: may run as root"
            if ctx.get("allowPrivilegeEscalation") is not False:
                yield f"{container.name}: allowPrivilegeEscalation is not false"
            if "ALL" not in ctx.get("capabilities", {}).get("drop", ()):
                yield f"{container.name}: capabilities are not dropped"
            if any(container.pod.get(k) for k in ("hostNetwork", "hostPID", "hostIPC")):
                yield f"{container.name}: shares a host namespace"

    assert list(violations()) == []


def test_writable_paths_are_on_mounted_volumes() -> None:
    def unmounted() -> Iterator[str]:
        for container in ours():
            if not container.spec.get("securityContext", {}).get("readOnlyRootFilesystem"):
                continue
            mounts = [
                m["mountPath"]
                for m in container.spec.get("volumeMounts", ())
                if not m.get("readOnly")
            ]
            env = container.env()
            paths = [env[k] for k in WRITABLE_ENV if k in env] + ["/tmp"]
            if container.program == CONTROL_PLANE:
                artifact_dir = parse_control_plane(container).artifact_dir
                paths += [str(artifact_dir)] if artifact_dir else []
            for path in paths:
                if not any(Path(path).is_relative_to(m) for m in mounts):
                    yield f"{container.name}: {path} is on the read-only root file system"

    assert list(unmounted()) == []


def test_dockerfile_installs_the_package_offline_as_the_pods_user() -> None:
    instructions = dockerfile_instructions()
    env = " ".join(args for op, args in instructions if op == "ENV")
    runs = " ".join(args for op, args in instructions if op == "RUN")
    user = [args for op, args in instructions if op == "USER"][-1].split(":")[0]

    assert re.search(r"\bYOLO_OFFLINE=true\b", env)
    assert re.search(r"\bpip install\b[^&]*\s\.(\s|$)", runs)
    assert user.isdigit(), f"USER {user} must be numeric for runAsNonRoot to verify it"
    assert int(user) != 0
    for container in ours():
        run_as = container.spec.get("securityContext", {}).get(
            "runAsUser", container.pod.get("securityContext", {}).get("runAsUser")
        )
        assert run_as == int(user), f"{container.name} runs as {run_as}, the image as {user}"


def test_kustomization_rewrites_the_image_our_containers_use() -> None:
    names = {image["name"] for image in kustomization().get("images", ())}

    assert ours()
    assert {c.spec["image"].split(":")[0] for c in ours()} <= names


# Monitoring: PodMonitor, PrometheusRule, the Grafana dashboard.


def dashboards() -> list[tuple[str, Mapping[str, Any]]]:
    """(file, dashboard JSON) for every file the kustomization's ConfigMap generators list."""
    found = []
    for generator in kustomization().get("configMapGenerator", ()):
        for entry in generator.get("files", ()):
            path = K8S / entry.split("=", 1)[-1]
            found.append((entry, json.loads(path.read_text())))
    return found


def panels(dashboard: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", ())


def dashboard_expressions() -> list[tuple[str, str]]:
    """(where, PromQL) of every dashboard panel target."""
    return [
        (f"{file}: panel {panel['title']!r}", target["expr"])
        for file, dashboard in dashboards()
        for panel in panels(dashboard)
        for target in panel.get("targets", ())
    ]


def alert_rules() -> list[tuple[Doc, Mapping[str, Any]]]:
    return [
        (doc, rule)
        for doc in docs()
        if doc.kind == "PrometheusRule"
        for group in doc.body["spec"]["groups"]
        for rule in group["rules"]
    ]


def alert_expressions() -> list[tuple[str, str]]:
    return [
        (f"{doc}: {rule.get('alert') or rule.get('record')}", rule["expr"])
        for doc, rule in alert_rules()
    ]


def test_custom_resources_use_the_prometheus_operator_api() -> None:
    kinds = {d.kind for d in docs() if d.kind in CUSTOM_KINDS}

    assert kinds == CUSTOM_KINDS
    assert {d.body["apiVersion"] for d in docs() if d.kind in CUSTOM_KINDS} == {MONITORING_API}


def test_alert_rules_are_complete_and_cover_the_failures_we_page_on() -> None:
    def problems() -> Iterator[str]:
        for doc, rule in alert_rules():
            name = rule.get("alert")
            if not name or not str(rule.get("expr", "")).strip():
                yield f"{doc}: a rule without alert name or expr: {rule}"
            if "for" in rule and not DURATION.fullmatch(str(rule["for"])):
                yield f"{doc} {name}: for {rule['for']!r} is not a Prometheus duration"
            if rule.get("labels", {}).get("severity") not in ("warning", "critical"):
                yield f"{doc} {name}: severity must be warning or critical"
            annotations = rule.get("annotations", {})
            if not (annotations.get("summary") and annotations.get("description")):
                yield f"{doc} {name}: give a summary and a description"
            if str(rule.get("expr")).count("(") != str(rule.get("expr")).count(")"):
                yield f"{doc} {name}: unbalanced parentheses"

    names = [rule.get("alert") for _, rule in alert_rules()]

    assert list(problems()) == []
    assert len(names) == len(set(names)), "alert names must be unique"
    assert set(names) >= REQUIRED_ALERTS


def test_pod_monitor_scrapes_a_named_metrics_port_of_nodes_and_control_planes() -> None:
    def problems() -> Iterator[str]:
        for monitor in (d for d in docs() if d.kind == "PodMonitor"):
            spec = monitor.body["spec"]
            if spec.get("namespaceSelector", {}).get("matchNames") != [NAMESPACE]:
                yield f"{monitor}: namespaceSelector must name {NAMESPACE}"
            scraped = [c for c in selected(spec["selector"]) if c.program is not None]
            if {c.program for c in scraped} != {NODE, CONTROL_PLANE}:
                yield f"{monitor}: selects {sorted({str(c.program) for c in scraped})}"
            for endpoint in spec["podMetricsEndpoints"]:
                for container in scraped:
                    if (endpoint["port"], "TCP") not in container.ports():
                        yield f"{monitor}: {container.name} has no port {endpoint['port']}"

    assert list(problems()) == []


@pytest.mark.parametrize("container", containers(CONTROL_PLANE), ids=lambda c: c.workload.name)
def test_control_plane_serves_metrics_on_a_declared_port(container: Container) -> None:
    config = parse_control_plane(container)

    assert config.metrics_port is not None, "give --metrics-port so the PodMonitor can scrape it"
    assert (config.metrics_port, "TCP") in container.ports()
    assert ("metrics", "TCP") in container.ports()


def test_dashboard_panels_each_query_prometheus() -> None:
    def problems() -> Iterator[str]:
        for file, dashboard in dashboards():
            ids = [p["id"] for p in panels(dashboard)]
            if len(ids) != len(set(ids)):
                yield f"{file}: panel ids repeat"
            for panel in panels(dashboard):
                if panel["type"] == "row":
                    continue
                targets = panel.get("targets", ())
                if not targets or not all(str(t.get("expr", "")).strip() for t in targets):
                    yield f"{file}: panel {panel['title']!r} has no query"
                if panel.get("datasource", {}).get("type") != "prometheus":
                    yield f"{file}: panel {panel['title']!r} is not on the Prometheus source"

    assert dashboards(), "the kustomization generates no dashboard ConfigMap"
    assert list(problems()) == []


def code_metric_names() -> set[str]:
    """What the code's own metric classes export (the live scrape test checks the processes)."""
    pages = (generate_latest(m.registry).decode() for m in (NodeMetrics(), ControlPlaneMetrics()))
    return exported_names(pages)


def test_dashboard_and_alerts_name_only_metrics_the_code_exports() -> None:
    exported = code_metric_names()

    unknown = [
        f"{where}: {name}"
        for where, expr in (*dashboard_expressions(), *alert_expressions())
        for name in sorted(metric_names(expr))
        if name not in exported
    ]

    assert dashboard_expressions()
    assert alert_expressions()
    assert unknown == []
