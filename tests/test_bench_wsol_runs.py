"""benchmarks/bench_wsol.py runs end to end on the CPU (not a timing test: its numbers are not
asserted, only that every stage it reports was measured)."""
import json
import sys

from benchmarks import bench_wsol


def test_bench_wsol_reports_every_stage(tmp_path, monkeypatch, capsys):
    out = tmp_path / "bench.json"
    monkeypatch.setattr(sys, "argv", ["bench_wsol.py", "--model", "resnet18_tdjoint", "--images", "8", "--batch", "4",
                                      "--workers", "0", "--kind", "noise", "--baseline-images", "0",
                                      "--stage-repeats", "1", "--out", str(out)])
    bench_wsol.main()
    res = json.loads(out.read_text())
    assert res["tdviz"]["images"] == 8 and res["tdviz"]["images_per_s"] > 0
    assert set(res["stages"]) == {"decode_images_per_s", "models_maps_gpu_boxes_images_per_s",
                                  "models_maps_cpu_masks_images_per_s", "boxes_from_gpu_boxes_images_per_s",
                                  "boxes_from_masks_images_per_s"}
    assert all(v > 0 for v in res["stages"].values())


def test_profile_wsol_reports_every_part(monkeypatch, capsys):
    """benchmarks/profile_wsol.py reaches its three parts (it broke unnoticed once when the
    pipeline's batch plan changed)."""
    from benchmarks import profile_wsol

    monkeypatch.setattr(sys, "argv", ["profile_wsol.py", "--model", "resnet18_tdjoint", "--images", "8", "--batch", "4",
                                      "--pool-sizes", "1"])
    profile_wsol.main()
    out = capsys.readouterr().out
    assert "models and maps, one batch of 4" in out and "ms/image; compiled trees" in out
    assert "box pool,  1 workers:" in out
