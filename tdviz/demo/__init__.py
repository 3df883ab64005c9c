"""Built-in demo benchmark: cluttered Fashion-MNIST for weakly-supervised localization.

* Two canvas generators (:mod:`tdviz.demo.generators`): v2 (:mod:`.scene`, the default, on which
  the shipped zoo is trained) and v1 (:mod:`.canvas`, kept to reproduce earlier results).
* :func:`make_demo_split` writes the validation split (from the packaged
  Fashion-MNIST test set) in ImageFolder, ILSVRC XML, Kaggle CSV,
  wsolevaluation and COCO formats, cached under ``$TDVIZ_CACHE`` or
  ``~/.cache/tdviz/demo``.
* :class:`CanvasDataset` renders train (or val) canvases on the fly for training.
* :func:`generate_split` / :func:`render_sample` give in-memory samples.
"""
from .build import default_cache_dir, make_demo_split, split_dir_name
from .canvas import Sample
from .generators import DEFAULT_VERSION, generate_split, make_sample, render, render_sample

GENERATOR_VERSION = DEFAULT_VERSION  # the name before generator v2; kept for scripts that read it
from .export import write_split
from .fashion import CLASS_NAMES, load_fashion

__all__ = [
    "CLASS_NAMES",
    "DEFAULT_VERSION",
    "GENERATOR_VERSION",
    "CanvasDataset",
    "Sample",
    "default_cache_dir",
    "generate_split",
    "load_fashion",
    "make_demo_split",
    "make_sample",
    "render",
    "render_sample",
    "split_dir_name",
    "write_split",
]


def __getattr__(name):  # torch is imported only when the Dataset is asked for
    if name == "CanvasDataset":
        from .dataset import CanvasDataset

        return CanvasDataset
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
