"""WSOL annotation readers: the demo split's four box formats give identical records, and bad
records are reported (naming the file and line), skipped and counted while the rest load."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tdviz.demo import make_demo_split
from tdviz.errors import TdvizError
from tdviz.wsol import (
    count_problems,
    demo_class_index,
    detect_annotation_kind,
    imagefolder_class_index,
    imagenet_class_index,
    load_gt_mask,
    load_wsol_dataset,
    read_coco,
    read_flat_labels,
    read_ilsvrc_xml,
    read_imagefolder_labels,
    read_loc_csv,
    read_synset_mapping,
    read_wsolevaluation,
)

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
N = 30


@pytest.fixture(scope="module")
def split(tmp_path_factory) -> Path:
    return make_demo_split(tmp_path_factory.mktemp("wsol") / "split", n=N, seed=0, workers=1)


@pytest.fixture(scope="module")
def split2(tmp_path_factory) -> Path:
    return make_demo_split(tmp_path_factory.mktemp("wsol2") / "split", n=12, seed=3, workers=1, two_objects=True)


def read_all(root: Path):
    ci = demo_class_index()
    return {
        "xml": read_ilsvrc_xml(root / "boxes_xml", root, ci),
        "csv": read_loc_csv(root / "LOC_val_solution.csv", root / "images", ci),
        "wsol": read_wsolevaluation(root / "wsol" / "box", root),
        "coco": read_coco(root / "instances_val.json", root),
    }


def as_records(samples, box_labels=True):
    return {s.image_id: (str(s.path), s.label, s.boxes.tolist(), s.box_labels.tolist() if box_labels else None,
                         s.width, s.height) for s in samples}


@pytest.mark.parametrize("which", ["split", "split2"])
def test_four_formats_give_identical_records(which, request):
    root = request.getfixturevalue(which)
    results = read_all(root)
    for name, (samples, problems) in results.items():
        assert problems == [], name
        assert len(samples) == (N if which == "split" else 12), name
    ref = as_records(results["xml"][0])
    truth = [json.loads(line) for line in (root / "samples.jsonl").read_text().splitlines()]
    assert len(ref) == len(truth)
    for name in ("csv", "coco"):
        assert as_records(results[name][0]) == ref, name
    # wsolevaluation's metadata has no class per box: every box gets the image's label
    assert as_records(results["wsol"][0], box_labels=False) == as_records(results["xml"][0], box_labels=False)
    s = results["xml"][0][0]
    assert s.boxes.dtype == np.float64 and s.boxes.shape[1] == 4 and s.path.is_file()
    assert s.path.parent.name == f"n{s.label:08d}" and (s.width, s.height) == (224, 224)
    if which == "split2":
        assert all(len(x.boxes) == 2 and x.box_labels[0] == x.label for x in results["xml"][0])


def test_dispatcher_detects_every_format(split):
    expect = as_records(read_all(split)["xml"][0])
    for src, kind in ((split / "boxes_xml", "xml"), (split / "LOC_val_solution.csv", "csv"),
                      (split / "wsol" / "box", "wsolevaluation"), (split / "instances_val.json", "coco")):
        assert detect_annotation_kind(src) == kind
        ds = load_wsol_dataset(src)  # images root and class map found next to the source
        assert ds.kind == kind and ds.problems == []
        assert as_records(ds.samples, box_labels=False) == as_records(read_all(split)["xml"][0], box_labels=False)
        assert {k: v[1] for k, v in as_records(ds.samples).items()} == {k: v[1] for k, v in expect.items()}
    with pytest.raises(TdvizError, match="expected a folder of ILSVRC .xml files"):
        load_wsol_dataset(split / "classes.txt")
    with pytest.raises(TdvizError, match="does not exist"):
        load_wsol_dataset(split / "nope.csv")


def test_mask_metadata_and_masks(split):
    samples, problems = read_wsolevaluation(split / "wsol" / "mask", split)
    assert problems == [] and len(samples) == N
    boxes = {s.image_id: s.boxes for s in read_wsolevaluation(split / "wsol" / "box", split)[0]}
    for s in samples[:5]:
        assert s.boxes.shape == (0, 4) and s.ignore_path.name == "ignore_none.png"
        fg, ignore = load_gt_mask(s.mask_paths, s.ignore_path)
        assert fg.shape == (224, 224) and not ignore.any()
        ys, xs = np.nonzero(fg)  # the demo images are 224 px: the mask's extent is the box
        assert [xs.min(), ys.min(), xs.max(), ys.max()] == boxes[s.image_id][0].tolist()


def test_class_indices(split):
    inet = imagenet_class_index()
    assert len(inet) == 1000 and inet["n01440764"] == 0 and inet["n15075141"] == 999
    assert list(inet) == sorted(inet)
    assert read_synset_mapping(split / "LOC_synset_mapping.txt") == demo_class_index()
    assert imagefolder_class_index(split / "images") == demo_class_index()


def test_imagefolder_and_flat_labels(split, tmp_path):
    from torchvision.datasets import ImageFolder

    samples, problems = read_imagefolder_labels(split / "images")
    tv = ImageFolder(str(split / "images"))
    assert problems == [] and [(str(s.path), s.label) for s in samples] == [(p, y) for p, y in tv.samples]
    labels = {s.image_id: s.label for s in read_all(split)["xml"][0]}
    assert {s.image_id: s.label for s in samples} == labels
    lines = [f"{s.path.relative_to(split).as_posix()} {f'n{s.label:08d}' if i % 2 else s.label}"
             for i, s in enumerate(samples)]
    lines += ["# a comment", "", "just_one_field", "images/missing.png 3", "images/x.png n99999999"]
    label_file = tmp_path / "labels.txt"
    label_file.write_text("\n".join(lines) + "\n")
    flat, problems = read_flat_labels(split, label_file, demo_class_index())
    assert {s.image_id: s.label for s in flat} == labels
    assert len(problems) == 3 and all(str(label_file) in p for p in problems)
    assert any("unknown synset" in p for p in problems) and any("does not exist" in p for p in problems)


# --------------------------------------------------------------------------- bad records


def test_bad_xml_records(split, tmp_path):
    xml_dir = tmp_path / "xml"
    shutil.copytree(split / "boxes_xml", xml_dir)
    files = sorted(xml_dir.glob("*.xml"))
    files[0].write_text(files[0].read_text()[:150])  # truncated: malformed
    text = files[1].read_text()
    files[1].write_text(text.replace("<name>n0000", "<name>x0000", 1))  # unknown synset (first object)
    files[2].write_text(text.split("<object>")[0] + "</annotation>\n")  # no object
    t3 = files[3].read_text()
    xmin, xmax = (t3.split(f"<{t}>")[1].split("<")[0] for t in ("xmin", "xmax"))
    files[3].write_text(t3.replace(f"<xmin>{xmin}<", "<xmin>300<").replace(f"<xmax>{xmax}<", "<xmax>310<"))
    t4 = files[4].read_text()
    ymax = t4.split("<ymax>")[1].split("<")[0]
    files[4].write_text(t4.replace(f"<ymax>{ymax}<", "<ymax>250<"))  # partly outside: clipped to 223
    samples, problems = read_ilsvrc_xml(xml_dir, split, demo_class_index())
    assert len(samples) == N - 4
    # 4 skipped images (one after its only box was skipped) and 1 clipped box
    assert count_problems(problems) == {"image skipped": 4, "box skipped": 1, "box clipped": 1, "other": 0}
    for f, words in ((files[0], "malformed XML"), (files[1], "unknown synset"), (files[2], "no <object>"),
                     (files[3], "entirely outside"), (files[4], "clipped")):
        assert any(p.startswith(str(f)) and words in p for p in problems), words
    clipped = next(s for s in samples if s.image_id == files[4].stem)
    assert clipped.boxes[0, 3] == 223


def test_bad_csv_lines(split, tmp_path):
    lines = (split / "LOC_val_solution.csv").read_text().splitlines()
    header, rows = lines[0], lines[1:]
    ids = [r.split(",")[0] for r in rows]
    bad = [
        f"{ids[0]},n00000001 1 2 3",  # line 2: not groups of five
        f"{ids[1]},n00000001 1 2 3 four",  # line 3: non-numeric
        f"{ids[2]},n77777777 1 2 3 4",  # line 4: unknown synset
        f"{ids[3]},n00000001 500 2 600 4",  # line 5: entirely outside the 224 px image
        f"{ids[4]},",  # line 6: no box
        f"{ids[5]},n00000001 1 2 3 4,extra",  # line 7: three fields
    ]
    csv_path = tmp_path / "LOC_val_solution.csv"
    csv_path.write_text("\n".join([header, *bad, *rows[6:], rows[6]]) + "\n")  # last: duplicate
    samples, problems = read_loc_csv(csv_path, split / "images", demo_class_index())
    assert len(samples) == N - 6
    for lineno in (2, 3, 4, 5, 6, 7, N + 2):
        assert any(p.startswith(f"{csv_path}:{lineno}:") for p in problems), lineno
    assert any("unknown synset" in p for p in problems) and any("listed again" in p for p in problems)
    (tmp_path / "no_header.csv").write_text("\n".join(rows) + "\n")
    with pytest.raises(TdvizError, match="ImageId,PredictionString"):
        read_loc_csv(tmp_path / "no_header.csv", split, demo_class_index())


def test_bad_coco_entries(split, tmp_path):
    data = json.loads((split / "instances_val.json").read_text())
    anns = data["annotations"]
    anns[0]["bbox"] = [1.0, 2.0, 3.0]  # malformed -> image 1 has no annotation left
    anns[1]["category_id"] = 99  # unknown category
    anns[2]["image_id"] = 12345  # unknown image
    anns[3]["bbox"] = [300.0, 10.0, 20.0, 20.0]  # entirely outside
    anns[4]["bbox"][3] = 500.0  # partly outside: clipped
    del data["images"][5]["file_name"]
    path = tmp_path / "coco.json"
    path.write_text(json.dumps(data))
    samples, problems = read_coco(path, split)
    assert len(samples) == N - 5  # images of annotations 0-3 (one box each) and images[5]
    assert all(p.startswith(str(path)) for p in problems)
    for words in ("annotations[0] (id 1) is malformed", "unknown category id 99", "unknown image id 12345",
                  "entirely outside", "clipped", "images[5] is malformed"):
        assert any(words in p for p in problems), words
    broken = tmp_path / "broken.json"
    broken.write_text('{"images": [\n  {"id": 1,,}\n]}')
    with pytest.raises(TdvizError, match=r"line 2, column"):
        read_coco(broken, split)


def test_bad_wsolevaluation_lines(split, tmp_path):
    meta = tmp_path / "meta"
    shutil.copytree(split / "wsol" / "box", meta)
    loc = (meta / "localization.txt").read_text().splitlines()
    first = loc[0].split(",")[0]
    loc[0] = f"{first},1,2,x,4"  # malformed line; its image then has no box
    loc.append("images/n00000000/not_listed.png,1,2,3,4")
    (meta / "localization.txt").write_text("\n".join(loc) + "\n")
    samples, problems = read_wsolevaluation(meta, split)
    assert len(samples) == N - 1
    assert any(p.startswith(f"{meta / 'localization.txt'}:1:") and "malformed" in p for p in problems)
    assert any("not in image_ids.txt" in p for p in problems)
    assert any("no usable box" in p and first in p for p in problems)
    (meta / "class_labels.txt").unlink()
    with pytest.raises(TdvizError, match="class_labels.txt"):
        read_wsolevaluation(meta, split)


def test_missing_images_are_reported(split, tmp_path):
    samples, problems = read_ilsvrc_xml(split / "boxes_xml", tmp_path, demo_class_index())
    assert samples == [] and len(problems) == N and "no image named" in problems[0]
    samples, problems = read_ilsvrc_xml(split / "boxes_xml", tmp_path, demo_class_index(), require_images=False)
    assert len(samples) == N and problems == []


def test_dispatcher_ilsvrc_layout_and_missing_images(split, tmp_path):
    ann = tmp_path / "ILSVRC" / "Annotations" / "CLS-LOC" / "val"
    data = tmp_path / "ILSVRC" / "Data" / "CLS-LOC" / "val"
    shutil.copytree(split / "boxes_xml", ann)
    data.mkdir(parents=True)
    for png in (split / "images").rglob("*.png"):
        (data / png.name).symlink_to(png)  # flat val/ folder, as ImageNet ships it
    shutil.copy(split / "LOC_synset_mapping.txt", tmp_path)
    shutil.copy(split / "LOC_val_solution.csv", tmp_path)
    for src in (ann, tmp_path / "LOC_val_solution.csv"):
        ds = load_wsol_dataset(src)
        assert ds.images_root == data and ds.problems == [] and len(ds) == N
        assert {s.image_id: s.label for s in ds.samples} == {s.image_id: s.label for s in read_all(split)["xml"][0]}
    with pytest.raises(TdvizError, match="None of the 30 images"):
        load_wsol_dataset(ann, images_root=tmp_path / "ILSVRC" / "Annotations")
