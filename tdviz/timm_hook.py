"""Add tdviz's model names to timm once timm is imported (installed by ``import tdviz``).

Kept free of torch and of the model zoo, so that ``import tdviz`` stays cheap for processes that
never build a model (the box-extraction workers of ``tdviz wsol``).
"""

from __future__ import annotations


def _register() -> None:
    from .models.timm_compat import register_with_timm

    register_with_timm()


def register_with_timm_when_imported() -> None:
    """Register now if timm is loaded, else right after its first import.

    Importing timm costs about a second; `tdviz cam` and most scripts never need it, so tdviz
    only adds its names once something imports timm.
    """
    import importlib.abc
    import importlib.util
    import sys

    if "timm" in sys.modules:
        _register()
        return

    class _AfterTimmImport(importlib.abc.MetaPathFinder):
        def find_spec(self, fullname, path, target=None):
            if fullname != "timm":
                return None
            sys.meta_path.remove(self)
            spec = importlib.util.find_spec(fullname)
            if spec is None or spec.loader is None:
                return spec
            exec_module = spec.loader.exec_module

            def exec_and_register(module):
                exec_module(module)
                _register()

            spec.loader.exec_module = exec_and_register
            return spec

    sys.meta_path.insert(0, _AfterTimmImport())
