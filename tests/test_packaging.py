"""The distributions: one version source, a LICENSE, full metadata, and no stray files.

The sdist and the wheel are built once per run with ``python -m build --no-isolation`` (the
``build`` front end and setuptools come with the ``dev`` extra) from a copy of the files git
tracks, exactly as a release would be built from a clean checkout.
"""

from __future__ import annotations

import email
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path
from typing import Any

import pytest

import billable
from tests.helpers import backend_independent

#: No database, no backend-specific work: runs once, in the SQLite session.
pytestmark = backend_independent

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
#: Top-level files an sdist may hold besides the two packages and setuptools' egg-info.
SDIST_FILES = {"PKG-INFO", "README.md", "LICENSE", "CHANGELOG.md", "pyproject.toml",
               "setup.cfg", "MANIFEST.in"}
PACKAGES = ("billable/", "bot_kit/")


def tracked(*prefixes: str) -> list[str]:
    names = subprocess.run(["git", "ls-files", "-z", *prefixes], cwd=ROOT, check=True,
                           capture_output=True).stdout.decode().split("\0")
    return [name for name in names if name and (ROOT / name).is_file()]


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("building from tracked files needs a git checkout")
    source, out = tmp_path_factory.mktemp("source"), tmp_path_factory.mktemp("dist")
    for name in tracked():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, source / name)
    done = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out),
                           str(source)], capture_output=True, text=True, timeout=600,
                          check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    sdist, wheel = next(out.glob("*.tar.gz")), next(out.glob("*.whl"))
    with tarfile.open(sdist) as archive:
        prefix = f"billable-{billable.__version__}/"
        members = [m.name.removeprefix(prefix) for m in archive.getmembers() if m.isfile()]
        pkg_info = archive.extractfile(prefix + "PKG-INFO").read().decode()  # type: ignore
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        info = f"billable-{billable.__version__}.dist-info/"
        metadata = archive.read(info + "METADATA").decode()
    return {"sdist": members, "wheel": names, "pkg_info": pkg_info, "metadata": metadata,
            "dist_info": info}


def test_the_version_is_written_once() -> None:
    assert "version" not in PYPROJECT["project"]
    assert "version" in PYPROJECT["project"]["dynamic"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {
        "attr": "billable.__version__"}
    writers = [name for name in tracked("billable", "bot_kit") if name.endswith(".py")
               and "__version__ =" in (ROOT / name).read_text(encoding="utf-8")]
    assert writers == ["billable/__init__.py"]


def test_both_distributions_carry_that_version(dists: dict[str, Any]) -> None:
    for text in (dists["metadata"], dists["pkg_info"]):
        assert email.message_from_string(text)["Version"] == billable.__version__


def test_license_classifiers_and_project_urls_are_published(dists: dict[str, Any]) -> None:
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    meta = email.message_from_string(dists["metadata"])

    assert meta["License-Expression"] == "MIT" == PYPROJECT["project"]["license"]
    assert meta.get_all("License-File") == ["LICENSE"]
    assert dists["dist_info"] + "licenses/LICENSE" in dists["wheel"]
    assert "LICENSE" in dists["sdist"]
    classifiers = meta.get_all("Classifier")
    assert {"Framework :: Django", "Typing :: Typed",
            "Programming Language :: Python :: 3.11"} <= set(classifiers)
    assert not [c for c in classifiers if c.startswith("License ::")]  # PEP 639: expression only
    urls = dict(url.split(", ", 1) for url in meta.get_all("Project-URL"))
    assert {"Homepage", "Documentation", "Changelog", "Issues", "Source"} <= set(urls)
    assert all(url.startswith("https://github.com/bubinez/billable") for url in urls.values())


def test_the_sdist_holds_the_packages_and_nothing_stray(dists: dict[str, Any]) -> None:
    members = dists["sdist"]
    stray = [name for name in members if name not in SDIST_FILES
             and not name.startswith((*PACKAGES, "billable.egg-info/"))]

    assert stray == []
    assert not [name for name in members if "__pycache__" in name or name.endswith(".pyc")]
    assert set(tracked(*PACKAGES)) <= set(members)


def test_the_wheel_holds_the_packages_with_their_data_files(dists: dict[str, Any]) -> None:
    names = dists["wheel"]
    outside = [name for name in names if not name.startswith((*PACKAGES, dists["dist_info"]))]

    assert outside == []
    assert set(tracked(*PACKAGES)) <= set(names)
    assert {"billable/py.typed", "bot_kit/py.typed",
            "billable/migrations/0003_upgrade_from_0_2.py"} <= set(names)
