"""The container and the compose stack, checked without a Docker engine (this machine has none):
the Dockerfile's stages and rules, the hashed locks, the wheel the image installs, and the
configuration compose gives Herald."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from service.settings import load_settings
from tests.helpers import ROOT

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


@dataclass
class Instruction:
    keyword: str
    arguments: str
    stage: int


def dockerfile() -> list[Instruction]:
    """Instructions with continuation lines joined and comments dropped, each tagged with its stage."""
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    instructions, stage = [], -1
    for line in joined.splitlines():
        if not line.strip():
            continue
        keyword, _, arguments = line.strip().partition(" ")
        if keyword.upper() == "FROM":
            stage += 1
        instructions.append(Instruction(keyword.upper(), " ".join(arguments.split()), stage))
    return instructions


def locked(path: Path) -> dict[str, tuple[str, list[str]]]:
    """name -> (version, hashes) for every requirement of a pip-compile --generate-hashes file."""
    text = re.sub(r"\\\n", " ", path.read_text(encoding="utf-8"))
    pins: dict[str, tuple[str, list[str]]] = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s;]+)", line)
        assert match, f"{path.name}: not pinned with ==: {line[:80]}"
        pins[canonicalize_name(match[1])] = (match[2], re.findall(r"--hash=sha256:([0-9a-f]{64})", line))
    return pins


def test_the_image_is_built_in_stages_and_runs_as_an_unprivileged_user() -> None:
    instructions = dockerfile()
    stages = [i for i in instructions if i.keyword == "FROM"]
    assert len(stages) >= 2, "a build stage and a runtime stage"
    last = stages[-1].stage
    runtime = [i for i in instructions if i.stage == last]
    assert "slim" in (ROOT / "Dockerfile").read_text(encoding="utf-8").split("ARG PYTHON_IMAGE=")[1].split()[0]
    users = [i.arguments for i in runtime if i.keyword == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), "the runtime stage runs as a non-root user"
    copies_from_build = [i.arguments for i in runtime if i.keyword == "COPY" and "--from=" in i.arguments]
    assert copies_from_build == ["--from=build /opt/herald /opt/herald"], "only the built virtualenv is carried over"
    [healthcheck] = [i.arguments for i in runtime if i.keyword == "HEALTHCHECK"]
    assert "/readyz" in healthcheck and "--interval=" in healthcheck
    [command] = [i.arguments for i in runtime if i.keyword == "CMD"]
    assert command == '["herald", "serve"]'


def test_dependencies_are_installed_from_the_hashed_locks_and_herald_as_a_wheel() -> None:
    runs = " ".join(i.arguments for i in dockerfile() if i.keyword == "RUN")
    assert "pip install --require-hashes --no-deps -r requirements-build.lock" in runs
    assert "pip install --require-hashes --no-deps --no-build-isolation -r requirements.lock" in runs
    assert "pip wheel --no-deps --no-build-isolation" in runs and "/wheels/herald-*.whl" in runs
    assert " -e " not in runs and "--editable" not in runs


def test_no_layer_holds_tests_or_benchmarks() -> None:
    for instruction in dockerfile():
        if instruction.keyword in ("COPY", "ADD") and "--from=" not in instruction.arguments:
            *sources, _ = instruction.arguments.split()
            for source in sources:
                assert source.split("/")[0] not in ("tests", "bench", "."), instruction
                assert (ROOT / source).exists(), f"{source} is copied but does not exist"
    text = (ROOT / ".dockerignore").read_text(encoding="utf-8")
    ignore = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    assert ignore[0] == "*", "the build context starts empty and names what it lets in"
    assert not any(line.startswith("!") and line.lstrip("!").split("/")[0] in ("tests", "bench") for line in ignore)


def test_the_locks_pin_every_dependency_with_hashes() -> None:
    runtime = locked(ROOT / "requirements.lock")
    build = locked(ROOT / "requirements-build.lock")
    for pins in (runtime, build):
        for name, (_, hashes) in pins.items():
            assert hashes, f"{name} has no hash"
    for spec in PYPROJECT["project"]["dependencies"]:
        requirement = Requirement(spec)
        name = canonicalize_name(requirement.name)
        assert name in runtime, f"{name} is a dependency but not in requirements.lock: run `make lock`"
        assert requirement.specifier.contains(runtime[name][0]), f"{name}=={runtime[name][0]} breaks {spec}"
    assert "setuptools" in build
    build_requirement = Requirement(PYPROJECT["build-system"]["requires"][0])
    assert build_requirement.specifier.contains(build["setuptools"][0])


def test_the_wheel_carries_templates_configuration_and_migrations_but_no_tests(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for name in ("service", "channels", "templates", "config", "tests", "bench"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path),
            ".",
        ],
        cwd=source,
        check=True,
        capture_output=True,
    )
    [wheel] = tmp_path.glob("herald-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in (
        "templates/ja/initial.txt.j2",
        "templates/en/_layout.html.j2",
        "templates/web/report.html.j2",
        "config/herald.toml",
        "config/partners.example.yaml",
        "service/store/migrations/env.py",
        "service/cli/__main__.py",
        "channels/email.py",
    ):
        assert needed in names, f"{needed} missing from the wheel"
    assert any(name.startswith("service/store/migrations/versions/0001") for name in names)
    assert not any(name.startswith(("tests/", "bench/")) for name in names)


def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))


def interpolated(environment: dict[str, Any]) -> dict[str, str]:
    """Compose's ${NAME:-default} with nothing set in the environment: the local defaults."""
    return {key: re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", str(value)) for key, value in environment.items()}


def test_compose_runs_herald_with_postgresql_and_a_mail_catcher() -> None:
    services = compose()["services"]
    assert {"postgres", "mailpit", "migrate", "herald", "sample-incident"} <= set(services)
    herald = services["herald"]
    assert herald["build"] == "." and "8080:8080" in herald["ports"]
    assert herald["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services["migrate"]["command"] == ["herald", "db", "upgrade"]
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "8025:8025" in services["mailpit"]["ports"], "Mailpit's web UI is published"
    for name in ("postgres", "mailpit"):
        assert services[name]["healthcheck"]["test"], f"{name} has a health check"
    sample = services["sample-incident"]
    assert sample["depends_on"]["herald"]["condition"] == "service_healthy"
    assert sample["command"][:3] == ["herald", "incident", "open"]
    assert sample["environment"]["HERALD_URL"] == "http://herald:8080"


def test_compose_gives_herald_a_valid_configuration_that_mails_the_catcher() -> None:
    services = compose()["services"]
    environment = interpolated(services["herald"]["environment"])
    settings = load_settings(environ=environment)  # every HERALD_* name and value must be valid
    assert settings.smtp.host == "mailpit" and settings.smtp.port == 1025 and settings.smtp.tls == "none"
    assert settings.database.url.startswith("postgresql://herald:") and "@postgres:5432/herald" in settings.database.url
    assert settings.database.auto_migrate is False
    assert {token.name for token in settings.auth.tokens if token.secret} == {"operator", "admin"}
    postgres = interpolated(services["postgres"]["environment"])
    assert f":{postgres['POSTGRES_PASSWORD']}@" in settings.database.url
    cli = interpolated(services["sample-incident"]["environment"])
    assert cli["HERALD_TOKEN"] == environment["HERALD_TOKEN_OPERATOR"], "the CLI uses the operator token"


def test_compose_posts_the_sample_the_image_carries() -> None:
    path = "/opt/herald/share/sample-incident.json"
    copies = [i.arguments for i in dockerfile() if i.keyword == "COPY"]
    assert f"config/sample-incident.json {path}" in copies
    assert path in compose()["services"]["sample-incident"]["command"]
