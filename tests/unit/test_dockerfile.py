"""The Dockerfile: what can be checked without a Docker engine (none runs here).

hadolint lints it; the checks below hold it to the wheel ``.ci/wheel-check``
tests, the pinned versions of ``constraints.txt``, the folders the ``riffle``
package links to, and the non-root user the manifests run as.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).parents[2]
DOCKERFILE = (ROOT / "Dockerfile").read_text(encoding="utf-8")


def test_hadolint_finds_nothing() -> None:
    hadolint = Path(sys.executable).with_name("hadolint")
    result = subprocess.run(
        [str(hadolint), str(ROOT / "Dockerfile")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_both_stages_use_one_pinned_base() -> None:
    bases = re.findall(r"^FROM (\S+)", DOCKERFILE, re.MULTILINE)
    assert len(bases) == 2 and bases[0] == bases[1], bases
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", bases[0]), bases[0]


def test_it_installs_the_wheel_wheel_check_tests_with_pinned_versions() -> None:
    check = (ROOT / ".ci" / "wheel-check").read_text(encoding="utf-8")
    assert "pip wheel --quiet --disable-pip-version-check --no-deps" in check
    assert "pip wheel --no-deps -w /tmp/dist ." in DOCKERFILE
    assert 'pip install -c constraints.txt "$(ls /tmp/dist/riffle-*.whl)[asn]"' in DOCKERFILE
    copied = set(re.findall(r"^COPY (\w+) \./\1$", DOCKERFILE, re.MULTILINE))
    linked = {p.name for p in (ROOT / "riffle").iterdir() if p.is_symlink()}
    assert linked and linked | {"riffle"} <= copied, linked - copied


def test_constraints_pin_every_runtime_dependency_within_its_range() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    pins = {}
    for line in (ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"not an exact pin: {line}"
            pins[canonicalize_name(name)] = version
    for text in project["dependencies"] + project["optional-dependencies"]["asn"]:
        requirement = Requirement(text)
        version = pins.get(canonicalize_name(requirement.name))
        assert version is not None, f"{requirement.name} is not pinned"
        assert requirement.specifier.contains(version), (text, version)


def test_it_runs_as_the_user_the_manifests_name() -> None:
    (user,) = re.findall(r"^USER (\S+)$", DOCKERFILE, re.MULTILINE)
    assert user == "10001:10001"
    for manifest in (ROOT / "k8s" / "base").glob("*.yaml"):
        for uid in re.findall(r"runAsUser: (\d+)", manifest.read_text(encoding="utf-8")):
            assert uid == "10001", manifest
    assert DOCKERFILE.rstrip().endswith('CMD ["--help"]') and 'ENTRYPOINT ["riffle"]' in DOCKERFILE
