import json
import os
import tempfile
from pathlib import Path

import pytest
import torch

REFERENCE = Path(__file__).resolve().parents[1].parent / "shared" / "reference"
LAYOUTS_DIR = Path(__file__).resolve().parent / "data" / "layouts"


def layout_files():
    """The authors' checkpoint layouts: ../shared/reference where present, else the copies in tests/data."""
    src = REFERENCE if REFERENCE.is_dir() else LAYOUTS_DIR
    return sorted(src.glob("*.layout.json"))


def pytest_configure(config):
    """Demo splits made by the tests go to a cache of their own, never the user's ~/.cache/tdviz."""
    os.environ.setdefault("TDVIZ_CACHE", tempfile.mkdtemp(prefix="tdviz-test-cache-"))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def test_set():
    """Fashion-MNIST's test items as the demo generators draw them (images, labels), loaded once."""
    from tdviz.demo.fashion import load_fashion

    return load_fashion("test")


def load_layout(path):
    return json.loads(Path(path).read_text())


def run_cli(*args, env: dict | None = None):
    """The ``tdviz`` command run in this process (typer's CliRunner: the real command, without the
    3 s a new interpreter spends importing torch). Returns ``returncode``, ``stdout`` and
    ``stderr``; an exception that escaped the command is re-raised, since a user would have seen a
    traceback."""
    from types import SimpleNamespace

    from tdviz_cli.main import app
    from typer.testing import CliRunner

    result = CliRunner().invoke(app, [str(a) for a in args], env=env, catch_exceptions=True)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return SimpleNamespace(returncode=result.exit_code, stdout=result.stdout, stderr=result.stderr)
