"""What the Kubernetes schemas cannot check in the rendered manifests and the Dockerfile.

Usage: check_manifests.py RENDERED_YAML DOCKERFILE
Prints one `ok - ...` line per check; exits non-zero on the first failure.
"""

import re
import sys

import yaml


def fail(message):
    print(f"not ok - deploy: {message}", file=sys.stderr)
    sys.exit(1)


def ok(message):
    print(f"ok - deploy: {message}")


def seconds(duration):
    match = re.fullmatch(r"(\d+)s", duration)
    if not match:
        fail(f"expected a duration in seconds, got {duration!r}")
    return int(match.group(1))


def main(rendered_path, dockerfile_path):
    with open(rendered_path) as f:
        docs = {doc["kind"]: doc for doc in yaml.safe_load_all(f) if doc}
    for kind in ["ConfigMap", "Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler"]:
        if kind not in docs:
            fail(f"rendered manifests lack a {kind}")
    deployment, service, config = docs["Deployment"], docs["Service"], docs["ConfigMap"]["data"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]

    if deployment["spec"]["replicas"] < 2 or docs["HorizontalPodAutoscaler"]["spec"]["minReplicas"] < 2:
        fail("fewer than 2 replicas")
    selector = deployment["spec"]["selector"]["matchLabels"]
    for name, wanted in [("Service", service["spec"]["selector"]),
                         ("PodDisruptionBudget", docs["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"])]:
        if wanted != selector or any(labels.get(k) != v for k, v in wanted.items()):
            fail(f"{name} selector {wanted} does not match the pods {labels}")
    if not container["image"].startswith("registry.example.com/") or ":" not in container["image"]:
        fail(f"kustomize images transformer not applied: {container['image']}")
    ok("2+ replicas; Service, PDB and Deployment select the same pods; image set by kustomize")

    health_port = int(config["HEALTH_LISTEN_ADDR"].rsplit(":", 1)[1])
    container_ports = {p["containerPort"] for p in container["ports"]}
    for probe in ["startupProbe", "livenessProbe", "readinessProbe"]:
        grpc = container.get(probe, {}).get("grpc")
        if not grpc or grpc["port"] != health_port or health_port not in container_ports:
            fail(f"{probe} is not a native grpc probe on the plaintext health port {health_port}")
    ok(f"startup, liveness and readiness are native grpc probes on the plaintext health port {health_port}")

    grace = seconds(config["SHUTDOWN_GRACE"])
    pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    if pod["terminationGracePeriodSeconds"] <= grace + pre_stop:
        fail(f"terminationGracePeriodSeconds {pod['terminationGracePeriodSeconds']} <= SHUTDOWN_GRACE {grace} + preStop {pre_stop}")
    ok(f"terminationGracePeriodSeconds {pod['terminationGracePeriodSeconds']} > SHUTDOWN_GRACE {grace}s + preStop {pre_stop}s")

    security = container["securityContext"]
    if not (pod["securityContext"]["runAsNonRoot"] and security["runAsNonRoot"]
            and security["readOnlyRootFilesystem"] and security["allowPrivilegeEscalation"] is False
            and security["capabilities"]["drop"] == ["ALL"]):
        fail(f"container security context too loose: {security}")
    resources = container["resources"]
    if not all(resources.get(k, {}).get(r) for k in ["requests", "limits"] for r in ["cpu", "memory"]):
        fail(f"cpu/memory requests and limits missing: {resources}")
    ok("non-root, read-only root filesystem, no privilege escalation, all capabilities dropped, requests and limits")

    env = {e["name"]: e for e in container["env"]}
    secret_file = env["ITNIO_API_SECRET_FILE"]["value"]
    mounts = [m for m in container["volumeMounts"] if secret_file.startswith(m["mountPath"] + "/")]
    volumes = {v["name"]: v for v in pod["volumes"]}
    if not mounts or "secret" not in volumes[mounts[0]["name"]] or "ITNIO_API_SECRET" in env:
        fail("the API secret must come from a mounted Secret file via ITNIO_API_SECRET_FILE")
    if config.get("ITNIO_MODE") != "live":
        fail("the ConfigMap must set ITNIO_MODE=live")
    ok("ITNIO_MODE=live; the API secret is a mounted Secret file read with ITNIO_API_SECRET_FILE")

    def mounted_secret(path):
        mount = [m for m in container["volumeMounts"] if path.startswith(m["mountPath"] + "/")]
        return bool(mount) and "secret" in volumes[mount[0]["name"]] and "subPath" not in mount[0]

    files = ["CALLERS_FILE", "TLS_CERT_FILE", "TLS_KEY_FILE"]
    if not all(name in env and mounted_secret(env[name]["value"]) for name in files):
        fail("CALLERS_FILE and the TLS files must be Secret volumes mounted as directories (no subPath: updates must reach the pod)")
    ok("live pods authenticate callers (CALLERS_FILE) and serve TLS, from Secrets mounted as directories")

    ports = {p["name"]: p for p in service["spec"]["ports"]}
    if ports["grpc"].get("appProtocol") != "grpc" or ports["metrics"]["port"] != 9090:
        fail(f"Service ports: {ports}")
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    if annotations.get("prometheus.io/scrape") != "true" or annotations.get("prometheus.io/port") != "9090":
        fail("pods lack the Prometheus scrape annotations")
    ok("Service: gRPC with appProtocol grpc, metrics on 9090; pods annotated for scraping")

    with open(dockerfile_path) as f:
        dockerfile = f.read()
    stages = re.findall(r"^FROM\s+(\S+)", dockerfile, re.M)
    final = dockerfile.rsplit("\nFROM ", 1)[1]
    checks = {
        "multi-stage": len(stages) >= 3,
        "dependency layer (cargo chef cook) before COPY . .": "cargo chef cook" in dockerfile,
        "ITNIO_MODE=live": re.search(r"ITNIO_MODE=live", final) is not None,
        "non-root USER": re.search(r"^USER\s+(?!root|0\b)", final, re.M) is not None,
        "EXPOSE 50051 9090": re.search(r"^EXPOSE\s+50051\s+9090", final, re.M) is not None,
    }
    missing = [name for name, passed in checks.items() if not passed]
    if missing:
        fail(f"Dockerfile lacks: {', '.join(missing)}")
    ok("Dockerfile: multi-stage, cached dependency layer, non-root, ITNIO_MODE=live, ports 50051 and 9090")


if __name__ == "__main__":
    main(*sys.argv[1:])
