import json
import math

import numpy as np
import pytest
import torch

from tdviz.selectivity import (
    TABLE_COLUMNS,
    SelectivityMeter,
    cam_focus,
    channel_means,
    class_selectivity_index,
    frac_mass,
    gini,
    hoyer,
    plot_distributions,
    selectivity_table_rows,
    summarize,
)


def _hurley_rickard_gini(c):
    """The published definition, written out term by term (ascending sort, 1-based k)."""
    c = sorted(float(x) for x in c)
    n, total = len(c), sum(c)
    return 1 - 2 * sum((c[k - 1] / total) * ((n - k + 0.5) / n) for k in range(1, n + 1))


@pytest.mark.parametrize("n", [2, 3, 10, 64, 2048])
def test_one_hot_and_uniform_vectors(n):
    one_hot = np.zeros(n)
    one_hot[n // 2] = 3.7
    assert gini(one_hot) == pytest.approx(1 - 1 / n, abs=1e-12)
    assert gini(one_hot) == pytest.approx(_hurley_rickard_gini(one_hot), abs=1e-12)
    assert hoyer(one_hot) == pytest.approx(1.0, abs=1e-12)
    assert frac_mass(one_hot) == pytest.approx(1 / n)

    uniform = np.full(n, 0.25)
    assert gini(uniform) == pytest.approx(0.0, abs=1e-12)
    assert hoyer(uniform) == pytest.approx(0.0, abs=1e-12)
    assert frac_mass(uniform) == pytest.approx(((9 * n + 9) // 10) / n)  # ceil(0.9 n)/n in integers


def test_one_hot_gini_exact_value_for_c_4():
    # c_(4) = 1 is the only non-zero term: G = 1 - 2 * 1 * (4 - 4 + 1/2)/4 = 1 - 1/4 = 0.75
    assert gini([0, 0, 1, 0]) == 0.75


def test_sparsity_of_a_batch_matches_per_vector_and_reference():
    rng = np.random.default_rng(0)
    v = rng.exponential(size=(7, 33))
    v[2] = 0  # a dead image -> NaN everywhere
    g, h, f = gini(v), hoyer(v), frac_mass(v)
    assert g.shape == h.shape == f.shape == (7,)
    assert np.isnan(g[2]) and np.isnan(h[2]) and np.isnan(f[2])
    for i in (0, 1, 3, 6):
        assert g[i] == pytest.approx(_hurley_rickard_gini(v[i]))
        assert g[i] == pytest.approx(gini(v[i]))
        top = np.sort(v[i])[::-1].cumsum()
        assert f[i] == pytest.approx((np.argmax(top >= 0.9 * v[i].sum()) + 1) / 33)
    with pytest.raises(ValueError):
        gini([1.0, -1.0])


def test_class_selectivity_index_extremes():
    labels = torch.arange(4).repeat(5)  # 4 classes, 5 images each
    acts = torch.zeros(20, 3, 2, 2)
    acts[labels == 2, 0] = 1.5  # channel 0 fires for class 2 only -> SI 1
    acts[:, 1] = 0.8  # channel 1 fires equally for every class -> SI 0
    # channel 2 is dead -> 0/0 -> SI 0 by definition
    si = class_selectivity_index(acts, labels, num_classes=4)
    np.testing.assert_allclose(si, [1.0, 0.0, 0.0], atol=1e-12)


def test_selectivity_formula_and_negative_clamp():
    # class means of one channel: 4, 2, 0 -> mu_max 4, mu_-max 1 -> SI 3/5
    labels = np.array([0, 1, 2])
    acts = np.array([4.0, 2.0, 0.0])[:, None, None, None] * np.ones((3, 1, 3, 3))
    acts[2] -= 5  # negative values are clamped at 0, element-wise, before spatial averaging
    assert class_selectivity_index(acts, labels, 3)[0] == pytest.approx(0.6)
    mixed = np.array([[[[-3.0, 1.0]]]])  # relu then mean -> 0.5
    assert channel_means(mixed)[0, 0] == pytest.approx(0.5)


def test_streaming_equals_batch():
    g = torch.Generator().manual_seed(1)
    acts = torch.relu(torch.randn(50, 16, 5, 5, generator=g))
    acts[:, 3] *= 0  # a dead channel
    acts[7] = 0  # a dead image
    labels = torch.randint(0, 6, (50,), generator=g)
    cams = torch.rand(50, 8, 8, generator=g)
    meter = SelectivityMeter(num_classes=6, channels=16)
    for lo, hi in [(0, 7), (7, 8), (8, 30), (30, 50)]:
        meter.update(acts[lo:hi], labels[lo:hi], cams[lo:hi])
    res = meter.result()
    v = channel_means(acts)
    np.testing.assert_allclose(res.si, class_selectivity_index(acts, labels, 6), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(res.gini, gini(v), equal_nan=True)
    np.testing.assert_allclose(res.hoyer, hoyer(v), equal_nan=True)
    np.testing.assert_allclose(res.frac90, frac_mass(v), equal_nan=True)
    np.testing.assert_allclose(res.focus, cam_focus(cams))
    assert res.n_images == 50 and res.n_dead_images == 1 and res.n_dead_channels == 1
    assert res.si[3] == 0
    assert res.summaries["gini"] == summarize(gini(v))
    d = json.loads(json.dumps(res.to_dict(per_image=True)))  # JSON-ready, NaN -> null
    assert d["gini"][7] is None and len(d["si"]) == 16 and d["n_cams"] == 50
    with pytest.raises(ValueError):
        meter.update(acts[:2, :8], labels[:2])


def test_cam_focus_counts_pixels_above_half_max():
    m = np.zeros((2, 10, 10))
    m[0, :3, :4] = 0.8  # 12 pixels at the max
    m[0, 5, 5] = 0.4  # exactly half max: not counted (strictly above)
    m[0, 6, 6] = 0.41  # counted
    assert cam_focus(m)[0] == pytest.approx(13 / 100)
    assert cam_focus(m)[1] == 0.0  # all-zero map
    assert cam_focus(torch.ones(4, 5)) == 1.0


def test_summarize_ignores_nan():
    assert summarize([1, 2, 3, 4, 5, math.nan]) == (3.0, 2.0, 4.0)
    assert all(math.isnan(x) for x in summarize([math.nan]))


def test_table_rows_and_plots(tmp_path):
    g = torch.Generator().manual_seed(2)
    results = {}
    for model, steps in [("resnet", [1]), ("td", [1, 2])]:
        for layer in ("layer3", "layer4"):
            for step in steps:
                meter = SelectivityMeter(num_classes=5, channels=12)
                for _ in range(3):
                    meter.update(torch.relu(torch.randn(8, 12, 4, 4, generator=g)), torch.randint(0, 5, (8,), generator=g),
                                 torch.rand(8, 6, 6, generator=g) if layer == "layer4" else None)
                results[(model, layer, step)] = meter.result()
    rows = selectivity_table_rows(results)
    assert len(rows) == 6 and all(len(r) == len(TABLE_COLUMNS) for r in rows)
    assert rows[2][:3] == ("td", "layer3", "1") and "[" in rows[2][3] and rows[2][7] == "–"
    paths = plot_distributions(results, tmp_path / "sel" / "distributions")
    assert [p.name for p in paths][:4] == ["distributions.png", "distributions.pdf", "distributions_layer3_si.png",
                                           "distributions_layer3_si.pdf"]
    assert len(paths) == 2 + 2 * 2 * 5  # the overview, then per layer and metric a column-wide figure
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and paths[0].stat().st_size > 10_000
    assert paths[1].read_bytes()[:5] == b"%PDF-" and paths[1].stat().st_size > 5_000
