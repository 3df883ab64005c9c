"""The demo zoo: small Bottleneck ResNets trained on cluttered Fashion-MNIST, one per paper config.

Each mirrors a ResNet50 row of the paper's Table 1 (plain, SE, CBAM, ECA, FCA, TDjoint(t2, m1),
TDtop(t2, m3)) at a width and depth that trains in minutes: Bottleneck blocks [2, 2, 2, 2],
widths 16/32/64/128 (outputs 64..512 channels), stem 24, TD at every block of layer3 and layer4.
The weights ship in the package (``tdviz/data/demo_zoo``) as fp16 safetensors.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import TdvizError
from .attention import DERIVED_BUFFER  # noqa: F401 - re-exported: train_demo_zoo leaves it out of saved files
from .record import ModelRecord
from .registry import ModelSpec, create_model, register
from .resnet import ResNet
from .td import TDConfig

DEMO_ARCH = {"block": "bottleneck", "layers": (2, 2, 2, 2), "widths": (16, 32, 64, 128), "stem_width": 24}
DEMO_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                "Ankle boot")
WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "data" / "demo_zoo"

#: trained on whole 224 x 224 canvases (no crop), ImageNet normalization
DEMO_RECORD = ModelRecord(crop="resize", num_classes=len(DEMO_CLASSES), class_names=DEMO_CLASSES)

_TD_AT = {2: range(64), 3: range(64)}
DEMO_MODELS = {
    "demo_resnet": ({}, None, "demo ResNet (plain)"),
    "demo_resnet_se": ({"attention": "se"}, None, "demo ResNet + SE"),
    "demo_resnet_cbam": ({"attention": "cbam"}, None, "demo ResNet + CBAM"),
    "demo_resnet_eca": ({"attention": "eca"}, None, "demo ResNet + ECA"),
    "demo_resnet_fca": ({"attention": "fca"}, None, "demo ResNet + FCA"),
    "demo_resnet_tdjoint": ({"td_blocks": _TD_AT}, TDConfig(2, 1, "joint"), "demo TD-ResNet, joint (t=2, m=1)"),
    "demo_resnet_tdtop": ({"td_blocks": _TD_AT}, TDConfig(2, 3, "top"), "demo TD-ResNet, top (t=2, m=3)"),
}

for _name, (_kwargs, _td, _desc) in DEMO_MODELS.items():
    register(ModelSpec(_name, ResNet, {**DEMO_ARCH, **_kwargs}, _td, f"{_desc}; cluttered Fashion-MNIST",
                       record=DEMO_RECORD))


def demo_weights_path(name: str) -> Path:
    """Where the shipped weights of a demo model live."""
    return WEIGHTS_DIR / f"{name}.safetensors"


def load_demo_model(name: str, device: str | torch.device = "cpu", path: str | Path | None = None) -> torch.nn.Module:
    """A demo-zoo model with its shipped weights (or those of ``path``, e.g. a seed that
    ``benchmarks/train_demo_zoo.py`` wrote), in eval mode (fp32)."""
    from ..checkpoints import load_weights

    if name not in DEMO_MODELS:
        raise TdvizError(f"{name!r} is not a demo model; demo models are {', '.join(DEMO_MODELS)}.")
    if path is None:
        path = demo_weights_path(name)
        if not path.is_file():
            raise TdvizError(f"The shipped weights of {name} are missing ({path}): reinstall tdviz.")
    elif not Path(path).is_file():
        raise TdvizError(f"{path} does not exist: give the weights file of a {name} run.")
    model = create_model(name)
    load_weights(model, path)  # fp16 values into the fp32 model; FCA's DCT filters come from the model
    return model.to(device).eval()
