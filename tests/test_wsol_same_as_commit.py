"""benchmarks/wsol_same_as_commit.py: two runs of the same code compare equal, a changed record does not."""
import json
import sys

import pytest

from benchmarks import wsol_same_as_commit
from tdviz.demo import make_demo_split


def test_same_code_compares_equal_and_a_changed_record_does_not(tmp_path, capsys):
    split = make_demo_split(n=1000, seed=0)
    for name in ("a", "b"):
        wsol_same_as_commit.run(split, str(tmp_path / name), 6, workers=0, box_workers=0)
    assert wsol_same_as_commit.compare(tmp_path / "a", tmp_path / "b")
    assert "6 of 6 / 6 lines equal" in capsys.readouterr().out
    records = tmp_path / "b" / "records.jsonl"
    lines = records.read_text().splitlines()
    first = json.loads(lines[0])
    first["label"] = (first["label"] + 1) % 10
    records.write_text("\n".join([json.dumps(first)] + lines[1:]) + "\n")
    assert not wsol_same_as_commit.compare(tmp_path / "a", tmp_path / "b")
    assert "5 of 6" in capsys.readouterr().out


def test_bad_arguments_are_one_line(tmp_path, monkeypatch):
    split = make_demo_split(n=1000, seed=0)
    for argv, says in ((["x", str(split), str(tmp_path / "o"), "many"], "must be whole numbers"),
                       (["x", "--compare", str(tmp_path / "none"), str(tmp_path)], "cannot be read as a finished run")):
        monkeypatch.setattr(sys, "argv", argv)
        with pytest.raises(SystemExit, match=says):
            wsol_same_as_commit.main()
