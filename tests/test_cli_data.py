"""``higround data``: the printed counts of real files, JSON output, errors and the listing."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from higround.cli.main import main


def _value(out: str, label: str) -> str:
    """The value printed after ``label`` in the stats table."""
    match = re.search(rf"^\s+{re.escape(label)}\s+(.+)$", out, flags=re.MULTILINE)
    assert match, f"{label!r} not in output:\n{out}"
    return match.group(1)


def test_stats_activitynet_val_2(shared_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = shared_data / "activitynet_captions"
    assert main(["data", "stats", "activitynet_captions", "--root", str(root), "--split", "val_2"]) == 0
    out = capsys.readouterr().out
    assert _value(out, "videos") == "4885"
    assert _value(out, "paragraphs") == "4885"
    assert _value(out, "sentences") == "17031"
    assert _value(out, "sentences per paragraph") == "mean 3.49, max 15"
    assert "clamped 111 span(s)" in out


def test_stats_charades_test_json(shared_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["data", "stats", "charades_sta", "--root", str(shared_data), "--split", "test", "--json"]
    assert main(argv) == 0
    stats = json.loads(capsys.readouterr().out)
    assert (stats["videos"], stats["sentences"], stats["clamped"], stats["skipped"]) == (1334, 3720, 562, [])
    assert stats["file"].endswith("charades_sta_test.txt")


def test_stats_max_sentences_and_file(shared_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = shared_data / "activitynet_captions" / "val_2.json"
    assert main(["data", "stats", "activitynet_captions", "--file", str(path), "--max-sentences", "8"]) == 0
    out = capsys.readouterr().out
    assert _value(out, "paragraphs") == "4929" and _value(out, "sentences") == "17031"
    assert _value(out, "sentences per paragraph").endswith("max 8")


def test_stats_bad_records(shared_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["data", "stats", "charades_sta", "--root", str(shared_data), "--split", "train"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "charades_sta_train.txt" in err and "'LEOL6' sentence 0" in err and "--on-bad skip" in err
    assert main([*argv, "--on-bad", "skip"]) == 0
    out = capsys.readouterr().out
    assert _value(out, "sentences") == "12404"
    assert "skipped 4 bad record(s): LEOL6#0, IOL8Q#0, AKKWU#0, AKKWU#1" in out


def test_stats_needs_a_source(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "stats", "tacos", "--split", "test"]) == 2
    assert "need --root and --split" in capsys.readouterr().err


def test_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == sorted(line.split()[0] for line in lines)
    assert any(line.startswith("activitynet_captions") and "val_2" in line for line in lines)
