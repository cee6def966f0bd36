"""Every environment variable the chart sets on a Poise process is a setting that process reads.

A service reads the common settings plus the ``reads=[...]`` its ``__main__`` hands to
``poise_common.runtime.main``; the migration Job reads the database URL. Values are checked too:
each container's plain environment must be accepted by ``PoiseSettings``.
"""

from __future__ import annotations

import ast
import os

import pytest
from pydantic import BaseModel, SecretStr

from poise_common.grpc_api.server import PORT_ENV
from poise_common.runtime import COMMON_SETTINGS
from poise_common.settings import PoiseSettings

from conftest import CI_VALUES, REPO, by_kind, containers

SERVICES = ("gateway", "vision", "audio", "nlp", "fusion")
# `python -m poise_common.db upgrade` opens the database the settings name (database_url, else home).
MIGRATION_READS = ["database_url", "home"]


def main_source(service: str) -> str:
    return (REPO / "services" / service / f"poise_{service}" / "__main__.py").read_text()


def reads_of(service: str) -> list[str]:
    """The ``reads=[...]`` argument of the ``main(...)`` call in the service's ``__main__``."""
    for node in ast.walk(ast.parse(main_source(service))):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "main":
            for keyword in node.keywords:
                if keyword.arg == "reads":
                    return list(ast.literal_eval(keyword.value))
    raise AssertionError(f"poise_{service}.__main__ calls main() without reads=")


def _nested(annotation) -> type[BaseModel] | None:
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def env_names(keys: list[str]) -> set[str]:
    """The environment variables behind setting keys: ``bus_url``, ``nlp`` (a whole section) or
    ``nlp.min_words_for_scoring`` (one field of it), named the way pydantic-settings reads them."""
    names = set()
    for key in keys:
        section, _, field = key.partition(".")
        info = PoiseSettings.model_fields[section]  # KeyError: a read that is no setting
        model = _nested(info.annotation)
        if model is None:
            assert not field, key
            names.add(f"POISE_{section.upper()}")
            continue
        for name in model.model_fields if not field else [field]:
            assert name in model.model_fields, key
            names.add(f"POISE_{section.upper()}__{name.upper()}")
    return names


def allowed_env(process: str) -> set[str]:
    if process == "migrate":
        return env_names(MIGRATION_READS)
    allowed = env_names([*COMMON_SETTINGS, *reads_of(process)])
    if "port_from_env" in main_source(process):  # POISE_GRPC_PORT: read by the build, not a setting
        allowed.add(PORT_ENV)
    return allowed


def poise_processes(docs: list[dict]):
    """(process, container) for every container that runs Poise code."""
    deployments = by_kind(docs, "Deployment")
    for service in SERVICES:
        yield service, containers(deployments[f"poise-{service}"])[0]
    job = by_kind(docs, "Job").get("poise-migration")
    if job is not None:
        yield "migrate", containers(job)[0]


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.name)
def test_each_variable_is_a_setting_the_process_reads(render, values):
    for process, container in poise_processes(render(values=[values])):
        names = {entry["name"] for entry in container["env"]}
        unread = names - allowed_env(process)
        assert not unread, f"{process}: the chart sets {sorted(unread)}, which it does not read"


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.name)
def test_each_value_is_accepted_by_the_settings(render, values, monkeypatch):
    for process, container in poise_processes(render(values=[values])):
        for name in [n for n in os.environ if n.startswith("POISE_")]:
            monkeypatch.delenv(name)
        for entry in container["env"]:
            # Secrets are references; any string stands in for them here.
            monkeypatch.setenv(entry["name"], entry.get("value", "postgresql+psycopg://u:p@db/poise"))
        PoiseSettings()  # raises ValidationError on a value the process would refuse at start


def test_the_check_catches_a_variable_the_service_does_not_read(render):
    docs = render(sets=["services.nlp.env.POISE_GATEWAY__SAMPLE_FPS=5"])
    nlp = dict(poise_processes(docs))["nlp"]
    assert "POISE_GATEWAY__SAMPLE_FPS" in {e["name"] for e in nlp["env"]} - allowed_env("nlp")


def secret_settings() -> set[str]:
    """Every SecretStr setting, top-level or nested, by its environment variable."""
    found = set()
    for name, info in PoiseSettings.model_fields.items():
        model = _nested(info.annotation)
        fields = model.model_fields.items() if model else [(None, info)]
        for sub, sub_info in fields:
            if SecretStr in getattr(sub_info.annotation, "__args__", (sub_info.annotation,)):
                found.add(f"POISE_{name.upper()}" + (f"__{sub.upper()}" if sub else ""))
    return found


def test_every_secret_setting_can_come_from_the_existing_secret(render):
    # The full values map every secret key; a new SecretStr setting needs its row in the chart's
    # poise.secretSettings table (templates/_helpers.tpl) and a key in values.yaml.
    docs = render(values=[REPO / "deploy/helm/poise/ci/full-values.yaml"])
    from_secret = {
        entry["name"]
        for _, container in poise_processes(docs)
        for entry in container["env"]
        if "secretKeyRef" in entry.get("valueFrom", {})
    }
    assert secret_settings() <= from_secret | {"POISE_DATABASE_URL"}
    assert "POISE_DATABASE_URL" in from_secret  # a credential, though a plain str setting
