import json
from pathlib import Path

import pytest
import torch

REFERENCE = Path(__file__).resolve().parents[1].parent / "shared" / "reference"
LAYOUTS_DIR = Path(__file__).resolve().parent / "data" / "layouts"


def layout_files():
    """The authors' checkpoint layouts: ../shared/reference where present, else the copies in tests/data."""
    src = REFERENCE if REFERENCE.is_dir() else LAYOUTS_DIR
    return sorted(src.glob("*.layout.json"))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def load_layout(path):
    return json.loads(Path(path).read_text())
