"""The zoo's training recipe: a run stopped by its deadline or by Ctrl-C and resumed equals one run
straight through."""
import os
import signal
import sys

import pytest
from safetensors.torch import load_file

from benchmarks import train_demo_zoo
from tdviz.demo.fashion import PACKAGED_DIR


def _train(monkeypatch, out, fashion, *extra):
    argv = ["train_demo_zoo.py", "--models", "demo_resnet", "--seeds", "0", "--samples", "16", "--batch", "4",
            "--pool", "2", "--warmup", "1", "--val", "4", "--workers", "0", "--ema", "0.9", "--eval-every", "8",
            "--val-during", "4", "--fashion-dir", str(fashion),
            "--out", str(out), *extra]
    monkeypatch.setattr(sys, "argv", argv)
    train_demo_zoo.main()


def test_stopped_and_resumed_training_equals_one_run(tmp_path, monkeypatch, capsys):
    fashion = tmp_path / "fashion"  # real Fashion-MNIST files (the packaged test set) in the train names
    fashion.mkdir()
    for kind in ("images-idx3", "labels-idx1"):
        (fashion / f"train-{kind}-ubyte.gz").symlink_to(PACKAGED_DIR / f"t10k-{kind}-ubyte.gz")
    _train(monkeypatch, tmp_path / "straight", fashion)
    _train(monkeypatch, tmp_path / "split", fashion, "--deadline", "0")
    assert "continue with the same command and --resume" in capsys.readouterr().out
    assert (tmp_path / "split" / "train_state.pt").is_file() and not (tmp_path / "split" / "results.json").exists()
    with pytest.raises(SystemExit, match="other settings"):
        _train(monkeypatch, tmp_path / "split", fashion, "--resume", "--samples", "20")
    _train(monkeypatch, tmp_path / "split", fashion, "--resume", "--export", str(tmp_path / "shipped"))
    a = load_file(str(tmp_path / "straight" / "weights" / "demo_resnet_seed0.safetensors"))
    b = load_file(str(tmp_path / "split" / "weights" / "demo_resnet_seed0.safetensors"))
    assert a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a)
    assert (tmp_path / "shipped" / "demo_resnet.safetensors").is_file()
    assert not (tmp_path / "split" / "train_state.pt").exists()
    log = (tmp_path / "split" / "logs" / "demo_resnet_seed0.log").read_text()
    assert "stopped at step 1" in log and "resumed at step 1" in log and "eval " in log and "eval_at draws 8" in log

    real_lr_at = train_demo_zoo.lr_at

    def ctrl_c_at_step_2(step, *rest):  # SIGINT arrives while step 2 is under way
        if step == 1:
            os.kill(os.getpid(), signal.SIGINT)
        return real_lr_at(step, *rest)

    monkeypatch.setattr(train_demo_zoo, "lr_at", ctrl_c_at_step_2)
    with pytest.raises(SystemExit) as stop:
        _train(monkeypatch, tmp_path / "ctrl_c", fashion)
    assert stop.value.code == 130 and (tmp_path / "ctrl_c" / "train_state.pt").is_file()
    monkeypatch.setattr(train_demo_zoo, "lr_at", real_lr_at)
    _train(monkeypatch, tmp_path / "ctrl_c", fashion, "--resume")
    c = load_file(str(tmp_path / "ctrl_c" / "weights" / "demo_resnet_seed0.safetensors"))
    assert all(a[k].equal(c[k]) for k in a)
    with pytest.raises(SystemExit, match="apt-get install dataset-fashion-mnist"):
        _train(monkeypatch, tmp_path / "nofashion", tmp_path / "nowhere")


@pytest.mark.parametrize("extra, says", [(["--models", "demo_resnet", "demo_resnet"], "each entry once"),
                                         (["--models", "resnet_bogus"], "not a demo model"),
                                         (["--seeds", "1", "1"], "each entry once"),
                                         (["--samples", "2", "--batch", "4"], "nothing would train")])
def test_what_cannot_train_is_one_clear_line(tmp_path, monkeypatch, capsys, extra, says):
    monkeypatch.setattr(sys, "argv", ["train_demo_zoo.py", "--out", str(tmp_path / "t"), *extra])
    with pytest.raises(SystemExit) as stop:
        train_demo_zoo.main()
    assert stop.value.code == 2 and says in capsys.readouterr().err
    assert not (tmp_path / "t").exists()  # refused before anything is written


def test_reused_batches_stop_and_resume_between_renders(tmp_path, monkeypatch, capsys):
    """--reuse 2: two steps per rendered batch; a call stopped by its deadline resumes exactly."""
    fashion = tmp_path / "fashion"
    fashion.mkdir()
    for kind in ("images-idx3", "labels-idx1"):
        (fashion / f"train-{kind}-ubyte.gz").symlink_to(PACKAGED_DIR / f"t10k-{kind}-ubyte.gz")
    _train(monkeypatch, tmp_path / "straight", fashion, "--reuse", "2", "--samples", "20")
    _train(monkeypatch, tmp_path / "split", fashion, "--reuse", "2", "--samples", "20", "--deadline", "0")
    assert "stopped after step 2 of 5" in capsys.readouterr().out
    _train(monkeypatch, tmp_path / "split", fashion, "--reuse", "2", "--samples", "20", "--resume")
    a = load_file(str(tmp_path / "straight" / "weights" / "demo_resnet_seed0.safetensors"))
    b = load_file(str(tmp_path / "split" / "weights" / "demo_resnet_seed0.safetensors"))
    assert a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a)
    log = (tmp_path / "straight" / "logs" / "demo_resnet_seed0.log").read_text()
    assert "step 5/5" in log  # the last rendered batch feeds only the one step left
