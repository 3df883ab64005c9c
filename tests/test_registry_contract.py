"""A contract every registered name keeps (as timm tests every name of ``list_models()``): it
builds, describes itself on the meta device (its ``tdviz models`` row), its last step is
``model(x)``, and its feature layer resolves and feeds the CAMs."""

import json

import pytest
import torch
from conftest import run_cli

import tdviz
from tdviz.cam import default_layer
from tdviz.steps import _resolve_layers


@pytest.fixture(scope="module")
def model_rows():
    res = run_cli("models", "--json")
    assert res.returncode == 0, res.stderr[-2000:]
    return {row["name"]: row for row in json.loads(res.stdout)}


def test_tdviz_models_lists_every_name(model_rows):
    assert sorted(model_rows) == tdviz.list_models()


def test_shipped_cost_table_equals_a_measurement_of_every_name(model_rows):
    """`tdviz models` reads data/model_costs.json; after changing a model, `python -m tdviz.complexity`."""
    measured = {r.name: r for r in tdviz.describe_models(measure=True)}
    for name, row in model_rows.items():
        assert (row["params"], row["steps"]) == (measured[name].params, measured[name].steps), name
        assert row["gmacs"] == pytest.approx(measured[name].gmacs, rel=1e-12), name


@pytest.mark.parametrize("name", tdviz.list_models())
def test_registered_model_contract(name, model_rows):
    torch.manual_seed(0)
    model = tdviz.create_model(name).eval()
    row = model_rows[name]
    assert row["params"] == tdviz.count_parameters(model) and row["gmacs"] > 0
    steps = model.num_steps if hasattr(model, "num_steps") else 1
    assert row["steps"] == steps
    layer = default_layer(model)
    assert layer in _resolve_layers(model, [layer])
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = model(x)
    out = tdviz.run_steps(model, x, layers=[layer])
    assert out.logits.shape == (2, steps, expected.shape[-1])
    torch.testing.assert_close(out.logits[:, -1], expected, rtol=1e-5, atol=1e-5)
    assert out.activations[layer].shape[:2] == (2, steps)


def test_a_re_registered_name_is_measured_not_read_from_the_table():
    from dataclasses import replace

    from tdviz.models.registry import get_spec, register

    shipped = get_spec("resnet18")
    (before,) = tdviz.describe_models(["resnet18"])
    try:
        register(replace(shipped, kwargs={**shipped.kwargs, "layers": [1, 1, 1, 1]}))  # a user's own resnet18
        (after,) = tdviz.describe_models(["resnet18"])
    finally:
        register(shipped)
    assert after.params < before.params and after.gmacs < before.gmacs
    assert tdviz.describe_models(["resnet18"])[0] == before
