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


def test_stats_of_a_split_with_every_record_bad_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Skipping everything used to print 0 videos and exit 0."""
    path = tmp_path / "test.json"
    record = {"timestamps": [[0, 25]], "sentences": ["a man cuts."], "fps": 25.0, "num_frames": 0}
    path.write_text(json.dumps({"s1.avi": record, "s2.avi": record}))
    assert main(["data", "stats", "tacos", "--file", str(path), "--on-bad", "skip"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"higround data stats: error: {path}: every record is bad")
    assert (
        "2 bad record(s) of 2 video(s)" in captured.err and "'s1.avi': unknown video duration" in captured.err
    )


@pytest.mark.parametrize(
    "error",
    [
        PermissionError(13, "Permission denied"),
        IsADirectoryError(21, "Is a directory"),
        NotADirectoryError(20, "Not a directory"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_os_errors_on_a_path_are_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], error: OSError
) -> None:
    """An unreadable file (root cannot make one, hence the patch) is named, without a traceback."""
    text = tmp_path / "charades_sta_test.txt"
    text.write_text("V1 0.0 2.0##a person sits.\n")
    csv_path = tmp_path / "Charades_v1_test.csv"
    error.filename = str(csv_path)

    def unreadable(path: Path) -> dict[str, float]:
        raise error

    monkeypatch.setattr("higround.data.readers.charades.read_lengths", unreadable)
    assert main(["data", "stats", "charades_sta", "--file", str(text)]) == 2
    err = capsys.readouterr().err
    assert err == f"higround data stats: error: {csv_path}: {error.strerror}\n"


def test_an_os_error_without_a_path_is_not_hidden(monkeypatch: pytest.MonkeyPatch) -> None:
    """Not about a path the user gave: shown in full, as a fault."""

    def broken(args: object) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("higround.cli.data_cmd.run", broken)
    with pytest.raises(OSError, match="No space left"):
        main(["data", "list"])
