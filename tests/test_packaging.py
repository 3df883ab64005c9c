"""Every subpackage of tdviz is listed in pyproject.toml, so a non-editable install has it all."""

from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_is_listed():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.relative_to(ROOT).parent.parts) for p in (ROOT / "tdviz").rglob("__init__.py")}
    assert found <= listed, found - listed
    assert "tdviz_cli" in listed and (ROOT / "cli" / "__init__.py").is_file()
