"""Kernels import and run with a read-only package and with NUMBA_CACHE_DIR set."""

import os
import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PROGRAM = """
from scanner.batch import TextBatch
from scanner.settings import SketchSettings
from scanner.tokens import tokenize_batch
import kernels
print(kernels.__file__)
print(tokenize_batch(TextBatch.from_strings(["Hello world"]), SketchSettings()).texts())
"""


def copy_packages(target: pathlib.Path) -> None:
    for package in ("kernels", "scanner"):
        shutil.copytree(ROOT / package, target / package, ignore=shutil.ignore_patterns("__pycache__"))


def make_read_only(path: pathlib.Path) -> None:
    for item in [path, *path.rglob("*")]:
        item.chmod(item.stat().st_mode & ~0o222)


def test_read_only_package_imports(tmp_path):
    packages, home = tmp_path / "site", tmp_path / "home"
    packages.mkdir()
    home.mkdir()
    copy_packages(packages)
    make_read_only(packages)
    make_read_only(home)
    environment = {key: value for key, value in os.environ.items() if key not in ("NUMBA_CACHE_DIR", "XDG_CACHE_HOME")}
    environment.update(PYTHONPATH=str(packages), HOME=str(home))
    command = [sys.executable, "-c", PROGRAM]
    if os.geteuid() == 0:
        # Root ignores file modes; dropping the override capabilities makes the
        # read-only copy read-only for this process too.
        command = [
            "setpriv",
            "--inh-caps=-dac_override,-dac_read_search",
            "--bounding-set=-dac_override,-dac_read_search",
            *command,
        ]
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv: cannot make a directory read-only for this test")

    result = subprocess.run(command, env=environment, cwd=tmp_path, capture_output=True, text=True, timeout=300)

    assert result.returncode == 0, result.stderr
    assert str(packages) in result.stdout
    assert "[['hello', 'world']]" in result.stdout
    assert "numba cache disabled" in result.stderr


def test_cache_written_to_numba_cache_dir(tmp_path):
    packages, cache = tmp_path / "site", tmp_path / "cache"
    packages.mkdir()
    copy_packages(packages)
    environment = dict(os.environ, PYTHONPATH=str(packages), NUMBA_CACHE_DIR=str(cache))

    result = subprocess.run(
        [sys.executable, "-c", PROGRAM], env=environment, cwd=tmp_path, capture_output=True, text=True, timeout=300
    )

    assert result.returncode == 0, result.stderr
    assert str(packages) in result.stdout
    assert list(cache.rglob("*.nbi")), "no numba index files in NUMBA_CACHE_DIR"
    assert not list(packages.rglob("*.nbi")), "numba wrote its cache beside the package"
