"""The wheel carries the RADIUS dictionary: build it, install it in a fresh venv, load the codec.

The source tree is copied first so the build leaves nothing behind in the working copy; the
venv sees the system site-packages (pyrad and friends) but the package itself must come from
the wheel, which the check asserts before it trusts anything else.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

CHECK = """
import json, radius_bridge
from importlib import resources
from radius_bridge.radius import RadiusCodec
codec = RadiusCodec()
codec.check_attributes([("Fortinet-Group-Name", "vpn-users"), ("Service-Type", "Framed-User")])
print(json.dumps({
    "package": radius_bridge.__file__,
    "dictionary": str(resources.files("radius_bridge.dictionaries") / "dictionary"),
}))
"""


def _can_build_wheels() -> bool:
    # setuptools < 70.1 needs the separate "wheel" project for bdist_wheel.
    return importlib.util.find_spec("wheel") is not None or _setuptools_has_bdist_wheel()


def _setuptools_has_bdist_wheel() -> bool:
    return importlib.util.find_spec("setuptools.command.bdist_wheel") is not None


@pytest.mark.slow
@pytest.mark.skipif(
    not _can_build_wheels(), reason="needs setuptools >= 70.1 or the 'wheel' package"
)
def test_installed_wheel_loads_the_shipped_dictionary(tmp_path: Path) -> None:
    """A non-editable install from the wheel finds and loads dictionaries/dictionary."""
    source = tmp_path / "source"
    source.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build", "dist")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (ROOT / name).exists():
            shutil.copy2(ROOT / name, source / name)
    for folder in ("radius_bridge", "dictionaries"):
        shutil.copytree(ROOT / folder, source / folder, ignore=ignore)

    wheels = tmp_path / "wheels"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--quiet",
            "-w",
            str(wheels),
            str(source),
        ],
        check=True,
        timeout=120,
        cwd=tmp_path,
    )
    (wheel,) = wheels.glob("radius_bridge-*.whl")

    environment = tmp_path / "venv"
    venv.EnvBuilder(system_site_packages=True, with_pip=False).create(environment)
    python = environment / "bin" / "python"
    # The system pip installs into the venv it is run from; --ignore-installed keeps it from
    # settling for the editable copy it can see through the system site-packages.
    subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-index",
            "--ignore-installed",
            "--quiet",
            str(wheel),
        ],
        check=True,
        timeout=120,
        cwd=tmp_path,
    )
    # -I: neither the working directory nor PYTHONPATH may put the source tree first.
    completed = subprocess.run(
        [str(python), "-I", "-c", CHECK],
        check=False,
        timeout=60,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={key: value for key, value in os.environ.items() if key != "PYTHONPATH"},
    )
    assert completed.returncode == 0, completed.stderr
    found = json.loads(completed.stdout)
    site_packages = str(environment / "lib")
    assert found["package"].startswith(site_packages), found
    assert found["dictionary"].startswith(site_packages), found
    assert (
        Path(found["dictionary"]).read_text() == (ROOT / "dictionaries" / "dictionary").read_text()
    )
