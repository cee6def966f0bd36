"""The Helm chart: lint, render and offline schema validation of every values file in ci/, and what
the rendered manifests must hold (GPU scheduling, scaling on the right consumer groups, hooks, ...)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest

from conftest import CHART, CI_VALUES, KUBE_VERSION, REPO, by_kind, containers, run_helm

CRD_SCHEMAS = Path(__file__).with_name("crd_schemas")
# Custom resources are checked against the schemas written down from their published CRDs in
# crd_schemas/; Kubernetes' own schemas (kubernetes-validate) do not know them.
CUSTOM_KINDS = {
    ("keda.sh/v1alpha1", "ScaledObject"): "scaledobject.keda.sh-v1alpha1.json",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor.monitoring.coreos.com-v1.json",
}
FULL = CHART / "ci" / "full-values.yaml"
MINIMAL = CHART / "ci" / "minimal-values.yaml"
# The settings that come from the Secret, never as a value in a manifest.
SECRET_ENV = ("POISE_DATABASE_URL", "POISE_INVITATION_SECRET", "POISE_SMTP__PASSWORD", "POISE_MASTER_KEYS")


def test_ci_has_the_three_values_files():
    assert {p.name for p in CI_VALUES} >= {"default-values.yaml", "full-values.yaml", "minimal-values.yaml"}


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.name)
def test_helm_lint(helm, values):
    done = run_helm(helm, "lint", str(CHART), "--strict", "--kube-version", KUBE_VERSION, "-f", str(values))
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("kube", ["1.25.0", KUBE_VERSION])
@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.name)
def test_manifests_validate_against_the_kubernetes_schemas(render, values, kube):
    docs = render(values=[values])
    assert docs
    for doc in docs:
        custom = CUSTOM_KINDS.get((doc["apiVersion"], doc["kind"]))
        if custom:
            jsonschema.validate(doc, json.loads((CRD_SCHEMAS / custom).read_text()))
        else:
            kubernetes_validate.validate(doc, kube, strict=True)


def test_a_broken_manifest_is_caught_by_the_validation(render):
    # The validation above must be able to fail: a probe port of the wrong type is refused.
    deployment = next(iter(by_kind(render(), "Deployment").values()))
    containers(deployment)[0]["readinessProbe"]["httpGet"]["port"] = {"name": "http"}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBE_VERSION, strict=True)
    scaled = next(iter(by_kind(render(values=[FULL]), "ScaledObject").values()))
    scaled["spec"]["triggers"][0]["metadata"]["lagThreshold"] = 500  # KEDA wants strings there
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(scaled, json.loads((CRD_SCHEMAS / CUSTOM_KINDS[("keda.sh/v1alpha1", "ScaledObject")]).read_text()))


def test_every_service_has_probes_resources_and_runs_unprivileged(render):
    deployments = by_kind(render(), "Deployment")
    assert {name.removeprefix("poise-") for name in deployments} == {"gateway", "vision", "audio", "nlp", "fusion"}
    for name, deployment in deployments.items():
        pod = deployment["spec"]["template"]["spec"]
        (container,) = containers(deployment)
        assert container["image"].endswith(f"/poise-{name.removeprefix('poise-')}:0.1.0")
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["resources"]["requests"]["memory"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert container["securityContext"]["readOnlyRootFilesystem"] is True


def test_triton_on_gpu_nodes_with_shared_memory_and_metrics(render):
    docs = render(values=[FULL])
    triton = by_kind(docs, "Deployment")["poise-triton"]
    pod = triton["spec"]["template"]["spec"]
    (container,) = containers(triton)
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    shm = next(v for v in pod["volumes"] if v["name"] == "dshm")
    assert shm["emptyDir"]["medium"] == "Memory"
    assert {"name": "dshm", "mountPath": "/dev/shm"} in container["volumeMounts"]
    assert "--model-config-name=gpu" in container["args"]
    assert {"--load-model=face_landmarker", "--load-model=speech_recognizer"} <= set(container["args"])
    # Regions that never grow: grown ones crashed Triton 2.51 under load (deploy/triton/README.md).
    assert f"--backend-config=python,shm-default-byte-size={256 * 2**20}" in container["args"]
    assert triton["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] == "8002"
    monitor = next(iter(by_kind(docs, "ServiceMonitor").values()))
    service_ports = {p["name"]: p["port"] for p in by_kind(docs, "Service")["poise-triton"]["spec"]["ports"]}
    assert service_ports["metrics"] == 8002
    assert {e["port"] for e in monitor["spec"]["endpoints"]} == {"http", "metrics"}
    # The analysers reach Triton's gRPC port through its Service.
    for name in ("vision", "audio"):
        env = {e["name"]: e.get("value") for e in containers(by_kind(docs, "Deployment")[f"poise-{name}"])[0]["env"]}
        assert env["POISE_INFERENCE__URL"] == f"triton://poise-triton:{service_ports['grpc']}"


def test_triton_serves_only_the_analysers_named_as_its_clients(render):
    docs = render(values=[FULL], sets=["triton.clients={audio}"])
    (container,) = containers(by_kind(docs, "Deployment")["poise-triton"])
    assert "--model-control-mode=explicit" in container["args"]
    assert [a for a in container["args"] if a.startswith("--load-model")] == ["--load-model=speech_recognizer"]
    urls = {}
    for name in ("vision", "audio"):
        env = {e["name"]: e.get("value") for e in containers(by_kind(docs, "Deployment")[f"poise-{name}"])[0]["env"]}
        urls[name] = env.get("POISE_INFERENCE__URL")
    assert urls["vision"] is None and urls["audio"].startswith("triton://poise-triton:")
    inference = next(r for r in by_kind(docs, "NetworkPolicy")["poise-triton"]["spec"]["ingress"] if {"port": "grpc"} in r["ports"])
    assert [p["podSelector"]["matchLabels"]["app.kubernetes.io/component"] for p in inference["from"]] == ["audio"]
    for wrong in ("triton.clients={nlp}", "triton.clients=null", "triton.clients={audio,audio}"):
        render(values=[FULL], sets=[wrong], expect_failure=True)


def test_triton_on_the_cpu_asks_for_no_gpu(render):
    triton = by_kind(render(values=[MINIMAL]), "Deployment")["poise-triton"]
    (container,) = containers(triton)
    assert "nvidia.com/gpu" not in container["resources"].get("limits", {})
    assert not any(a.startswith("--model-config-name") for a in container["args"])


def test_keda_scales_each_analyser_on_its_own_consumer_group_and_topic(render):
    from poise_audio.service import GROUP as AUDIO_GROUP
    from poise_common.messages import Topics
    from poise_nlp.service import GROUP as NLP_GROUP
    from poise_vision.service import GROUP as VISION_GROUP

    expected = {
        "poise-vision": (VISION_GROUP, Topics.MEDIA_FRAMES),
        "poise-audio": (AUDIO_GROUP, Topics.MEDIA_AUDIO),
        "poise-nlp": (NLP_GROUP, Topics.TRANSCRIPTS),
    }
    docs = render(values=[FULL])
    scaled = by_kind(docs, "ScaledObject")
    assert set(scaled) == set(expected)
    for name, (group, topic) in expected.items():
        (trigger,) = scaled[name]["spec"]["triggers"]
        assert trigger["type"] == "kafka"
        assert trigger["metadata"]["consumerGroup"] == group
        assert trigger["metadata"]["topic"] == "prod." + topic  # the values' topic prefix
        assert scaled[name]["spec"]["scaleTargetRef"]["name"] == name
        # KEDA owns the replica count: the Deployment leaves it alone.
        assert "replicas" not in by_kind(docs, "Deployment")[name]["spec"]
    assert not by_kind(docs, "HorizontalPodAutoscaler")


def test_without_keda_the_hpa_scales_the_analysers(render):
    docs = render(values=[MINIMAL])
    assert set(by_kind(docs, "HorizontalPodAutoscaler")) == {"poise-vision", "poise-audio", "poise-nlp"}
    assert not by_kind(docs, "ScaledObject")


def test_migration_runs_as_a_hook_before_the_services_and_they_skip_it(render):
    docs = render()
    job = by_kind(docs, "Job")["poise-migration"]
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    (container,) = containers(job)
    assert container["command"] == ["python", "-m", "poise_common.db", "upgrade"]
    assert container["image"].endswith("/poise-fusion:0.1.0")
    for name in ("poise-gateway", "poise-fusion"):
        env = {e["name"]: e.get("value") for e in containers(by_kind(docs, "Deployment")[name])[0]["env"]}
        assert env["POISE_MIGRATE_ON_START"] == "false"
    minimal = render(values=[MINIMAL])
    assert "poise-migration" not in by_kind(minimal, "Job")
    env = {e["name"]: e.get("value") for e in containers(by_kind(minimal, "Deployment")["poise-fusion"])[0]["env"]}
    assert env["POISE_MIGRATE_ON_START"] == "true"


def test_the_migration_command_exists_in_the_code():
    import importlib.util

    assert importlib.util.find_spec("poise_common.db.__main__") is not None


def test_secrets_come_only_by_reference(render):
    docs = render(values=[FULL])
    assert not by_kind(docs, "Secret")
    for doc in docs:
        if doc["kind"] not in ("Deployment", "Job"):
            continue
        for container in containers(doc):
            for entry in container.get("env", []):
                if entry["name"] in SECRET_ENV:
                    assert "value" not in entry
                    assert entry["valueFrom"]["secretKeyRef"]["name"] == "poise-prod"


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.name)
def test_gateway_and_fusion_read_the_same_master_keys(render, values):
    deployments = by_kind(render(values=[values]), "Deployment")
    gateway, fusion = (
        next(e for e in containers(deployments[name])[0]["env"] if e["name"] == "POISE_MASTER_KEYS")
        for name in ("poise-gateway", "poise-fusion")
    )
    assert gateway == fusion and gateway["valueFrom"]["secretKeyRef"]["key"]


@pytest.mark.parametrize("unset", ["secrets.keys.masterKeys=", "secrets.keys.masterKeys=null"])
def test_the_chart_refuses_to_render_without_master_keys(render, unset):
    message = render(values=[FULL], sets=[unset], expect_failure=True)
    assert "secrets.keys.masterKeys is empty" in message and "Secret poise-prod" in message


def test_the_command_the_refusal_names_makes_a_master_key(render):
    from typer.testing import CliRunner

    from poise.cli import app
    from poise_common.crypto import MasterKeys

    message = render(sets=["secrets.keys.masterKeys="], expect_failure=True)
    command = re.search(r"`poise ([^`]+)`", message)
    assert command, message
    done = CliRunner().invoke(app, command.group(1).split())
    assert done.exit_code == 0, done.output
    # One id:base64 entry, as POISE_MASTER_KEYS reads it (parsing checks the key's length).
    (key,) = MasterKeys.parse(done.stdout.strip())
    assert key.key_id == command.group(1).split()[-1]


def fixed_consumer_groups() -> set[str]:
    """The consumer groups whose names do not change between processes (so their dead-letter topics can be named)."""
    from poise_audio.service import GROUP as AUDIO
    from poise_fusion.greenhouse import GreenhouseNotifier
    from poise_fusion.invitations import InvitationMailer
    from poise_fusion.service import GROUP as FUSION
    from poise_fusion.webhooks import WebhookDispatcher
    from poise_nlp.service import GROUP as NLP
    from poise_vision.service import GROUP as VISION

    return {AUDIO, FUSION, NLP, VISION, GreenhouseNotifier.group, InvitationMailer.group, WebhookDispatcher.group}


def test_every_topic_gets_its_bounded_retention_from_the_job_and_the_services(render):
    from poise_common.bus.kafka import STANDARD_TOPICS

    manifests = render(values=[FULL])
    job = by_kind(manifests, "Job")["poise-kafka-topics"]
    script = containers(job)[0]["command"][-1]
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    # Each loop: its topics, then the retention and segment.ms they get.
    loops = re.findall(r"for name in ([^;]+); do\n\s+topic \"\$name\" (\d+) (\d+)", script)
    given = {name: (retention, segment) for names, retention, segment in loops for name in names.split()}
    media = {"prod.media.frames", "prod.media.audio"}
    expected = {f"prod.{t}" for t in STANDARD_TOPICS} | {f"prod.dlq.{g}" for g in fixed_consumer_groups()}
    assert set(given) == expected
    assert {given[t] for t in media} == {("1800000", "1800000")}  # the full values' mediaRetentionMs
    assert {given[t] for t in expected - media} == {("259200000", "3600000")}  # the default retentionMs
    assert 'retention.ms="$2",segment.ms="$3"' in script  # also set on topics that exist
    # The services create topics with the same retention.
    bus_urls = {env["value"] for d in by_kind(manifests, "Deployment").values() for c in containers(d)
                for env in c.get("env", []) if env["name"] == "POISE_BUS_URL"}
    assert bus_urls and all("&retention_ms=259200000&media_retention_ms=1800000" in url for url in bus_urls)


def test_a_retention_past_two_weeks_is_refused(render):
    message = render(sets=["kafka.retentionMs=2592000000"], expect_failure=True)
    assert "retentionMs" in message


def test_frameworks_configmap_is_mounted_and_loads(render, tmp_path):
    from poise_fusion.framework import get_framework

    bundled = REPO / "services" / "fusion" / "poise_fusion" / "frameworks"
    files = [rf"frameworks.files.{p.name.replace('.', chr(92) + '.')}={p}" for p in sorted(bundled.glob("*.yaml"))]
    docs = render(set_files=files)
    (configmap,) = by_kind(docs, "ConfigMap").values()
    for name, text in configmap["data"].items():
        (tmp_path / name).write_text(text)
    assert get_framework("generic", tmp_path).competencies
    assert get_framework("sales-development-rep", tmp_path).competencies
    for name in ("poise-gateway", "poise-fusion"):
        (container,) = containers(by_kind(docs, "Deployment")[name])
        env = {e["name"]: e.get("value") for e in container["env"]}
        mount = next(m for m in container["volumeMounts"] if m["name"] == "frameworks")
        assert env["POISE_FUSION__FRAMEWORKS_DIR"] == mount["mountPath"]


def test_gateway_replicas_need_a_shared_volume(render):
    message = render(sets=["services.gateway.replicas=2"], expect_failure=True)
    assert "ReadWriteMany" in message
    deployment = by_kind(render(values=[FULL]), "Deployment")["poise-gateway"]
    assert deployment["spec"]["replicas"] == 3


def test_values_outside_the_schema_are_refused(render):
    assert "partitions" in render(sets=["kafka.partitions=0"], expect_failure=True)
    # Extra environment must at least look like a setting (the settings test checks the rest).
    render(sets=["services.nlp.env.NOT_A_SETTING=1"], expect_failure=True)
    render(sets=["secrets.keys.databaseUrl="], expect_failure=True)


def test_network_policies_restrict_triton_to_the_analysers(render):
    policies = by_kind(render(values=[FULL]), "NetworkPolicy")
    triton = policies["poise-triton"]["spec"]["ingress"]
    inference = next(rule for rule in triton if {"port": "grpc"} in rule["ports"])
    components = {peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"] for peer in inference["from"]}
    assert components == {"vision", "audio"}
    gateway = policies["poise-gateway"]["spec"]["ingress"][0]["from"]
    assert len(gateway) == 2  # the ingress controller's namespace and the monitoring one


def test_pod_disruption_budgets_and_service_account(render):
    docs = render()
    assert set(by_kind(docs, "PodDisruptionBudget")) == {f"poise-{n}" for n in ("gateway", "vision", "audio", "nlp", "fusion")}
    (account,) = by_kind(docs, "ServiceAccount").values()
    for deployment in by_kind(docs, "Deployment").values():
        assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == account["metadata"]["name"]
