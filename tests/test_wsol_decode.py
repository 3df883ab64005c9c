"""The GPU decoder's batching (nvJPEG on a GPU; torchvision's libjpeg-turbo when given the CPU, as
here) against the CPU loader: the same images, the same pixels, and every odd file taken by the
CPU fallback or reported."""

import numpy as np
import pytest
import torch
from PIL import Image

from tdviz.datasets import Sample
from tdviz.images import Preprocess
from tdviz.wsol.decode import gpu_batches, jpeg_header
from tdviz.wsol.loader import cpu_batches


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("decode")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:375, 0:500]
    photo = np.stack([127 + 100 * np.sin(xx / 23.0), 127 + 100 * np.cos(yy / 17.0), 90 + 0 * xx], -1)
    photo = np.clip(photo + rng.normal(0, 8, photo.shape), 0, 255).astype(np.uint8)
    paths = []
    for name, save in (("rgb.jpg", lambda p: Image.fromarray(photo).save(p, quality=90)),
                       ("gray.jpg", lambda p: Image.fromarray(photo[..., 0]).save(p, quality=85)),
                       ("cmyk.jpg", lambda p: Image.fromarray(photo).convert("CMYK").save(p)),
                       ("progressive.jpg", lambda p: Image.fromarray(photo).save(p, quality=80, progressive=True)),
                       ("png.png", lambda p: Image.fromarray(photo[:200, :300]).save(p)),
                       ("small.jpg", lambda p: Image.fromarray(photo[:30, :40]).save(p, quality=95))):
        save(d / name)
        paths.append(d / name)
    good = (d / "rgb.jpg").read_bytes()
    (d / "cut.jpg").write_bytes(good[: len(good) // 2])  # truncated
    (d / "text.jpg").write_text("not an image")
    paths += [d / "cut.jpg", d / "text.jpg"]
    return paths


def _samples(paths):
    return [Sample(p.stem, p, 0, np.zeros((0, 4)), np.zeros(0, np.int64)) for p in paths]


def test_jpeg_header(files):
    assert jpeg_header(files[0].read_bytes()) == (500, 375, 3, 8)
    assert jpeg_header(files[1].read_bytes())[2] == 1
    assert jpeg_header(files[2].read_bytes())[2] == 4  # CMYK: the CPU decodes it
    assert jpeg_header(files[4].read_bytes()) is None  # a PNG
    assert jpeg_header(b"\xff\xd8\xff") is None


def test_decoder_batches_equal_the_cpu_loader(files):
    samples = _samples(files)
    preprocs = {"cam": Preprocess(), "wsol": Preprocess(mode="resize")}
    ours = list(gpu_batches(samples, preprocs, batch_size=4, device=torch.device("cpu"), threads=2))
    theirs = list(cpu_batches(samples, preprocs, batch_size=4, workers=0))
    assert [b.good for b in ours] == [b.good for b in theirs]
    assert [[i for i, _ in b.bad] for b in ours] == [[i for i, _ in b.bad] for b in theirs]
    bad = {samples[i].image_id for b in ours for i, _ in b.bad}
    assert bad == {"cut", "text"}
    for a, b in zip(ours, theirs):
        for key in preprocs:
            assert a.stacked[key].dtype == torch.uint8 and torch.equal(a.stacked[key], b.stacked[key]), key
