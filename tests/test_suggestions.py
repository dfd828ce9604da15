"""Every fix an error suggests is spelled as the command at hand accepts it, and following it works.

The readers raise errors that carry their fix as data (:class:`higround.errors.FixableDataError`);
``higround.cli.main`` spells it per command. Each case here reads a real file (or a corrupted copy of
one), takes the suggestion from the printed error, checks that the real parser accepts it, and runs
the command again with it.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import re
from pathlib import Path

import pytest

from higround.cli.main import build_parser, command_parser, main, spell_fix
from higround.data.readers import load_dataset
from higround.data.readers._table import SKIP_BAD_RECORDS
from higround.errors import DataError, Fix, FixableDataError
from higround.metrics import PredictionRecord, write_predictions

REPO = Path(__file__).resolve().parents[1]
CHARADES_BAD = ["LEOL6#0", "IOL8Q#0", "AKKWU#0", "AKKWU#1"]  # the reversed spans of the train file


def _run(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, str, str]:
    rc = main(argv)
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def _suggested(err: str, verb: str = "pass", purpose: str = " to skip bad records") -> str:
    """The fix the one-line error suggests, as printed: ``--on-bad skip``, ``data.on_bad=skip``..."""
    assert err.count("\n") == 1 and "Traceback" not in err, err
    match = re.search(rf"; {verb} (.+?){re.escape(purpose)}$", err.strip())
    assert match, f"no suggestion in: {err}"
    return match.group(1)


def _apply(argv: list[str], fix: str) -> list[str]:
    """``argv`` with ``fix`` given as its spelling says: a flag or override appended, a positional
    (``higround data stats tacos ...``) put in place of the one given."""
    if fix.endswith(" ..."):
        value = fix.removesuffix(" ...").split()[-1]
        namespace = build_parser().parse_args(argv)
        positional = next(i for i, a in enumerate(argv) if a == namespace.dataset)
        return [*argv[:positional], value, *argv[positional + 1 :]]
    return [*argv, *fix.split(" ")]


def _parsed(argv: list[str]) -> argparse.Namespace:
    """``argv`` parsed by the real parser (a SystemExit fails the test: the fix must parse)."""
    return build_parser().parse_args(argv)


def _charades_predictions(shared_data: Path, tmp_path: Path) -> Path:
    """Exact predictions for every sentence of the Charades-STA train file, the 4 bad ones included."""
    dataset = load_dataset("charades_sta", shared_data, "train", on_bad="skip")
    records = [
        PredictionRecord(key=s.key, video_id=p.video_id, spans=(s.span,), sentence_index=s.index)
        for p, s in dataset.sentences()
    ]
    for key in CHARADES_BAD:
        video, index = key.split("#")
        records.append(
            PredictionRecord(key=key, video_id=video, spans=((0.0, 5.0),), sentence_index=int(index))
        )
    path = tmp_path / "preds.json"
    write_predictions(path, records, dataset="charades_sta", split="train")
    return path


# --- the rule, for every command of the real parser -------------------------------------------------


def test_every_command_spells_the_skip_fix_so_that_it_parses() -> None:
    parser = build_parser()
    spelled = {}
    for argv in (
        ["data", "stats", "tacos"],
        ["baseline", "prior", "--dataset", "tacos", "--root", "r", "--train-split", "a", "--eval-split", "b"],
        ["evaluate", "--predictions", "p"],
        ["evaluate", "--checkpoint", "c"],
        ["predict", "--checkpoint", "c", "--split", "s", "--out", "o"],
        ["train", "--config", "c"],
        ["demo"],
        ["extract", "v", "--out", "o"],
        ["ground", "v", "--text", "t", "--checkpoint", "c"],
    ):
        args = parser.parse_args(argv)
        fix = spell_fix(command_parser(parser, args), SKIP_BAD_RECORDS)
        spelled[" ".join(argv[:2]) if argv[0] in ("data", "baseline") else argv[0]] = fix
        if fix is not None:
            again = parser.parse_args(_apply(argv, fix))
            if fix.startswith("--"):
                assert again.on_bad == "skip"
            else:
                assert again.overrides[-1] == "data.on_bad=skip"
    assert spelled == {
        "data stats": "--on-bad skip",
        "baseline prior": "--on-bad skip",
        "evaluate": "--on-bad skip",
        "predict": "--on-bad skip",
        "train": "data.on_bad=skip",
        "demo": "data.on_bad=skip",
        "extract": None,  # reads no annotation file: nothing to suggest
        "ground": None,
    }


def test_the_python_message_spells_the_keyword() -> None:
    err = FixableDataError("f.json: video 'v' sentence 1: start 2 after end 1", SKIP_BAD_RECORDS)
    assert (
        str(err)
        == "f.json: video 'v' sentence 1: start 2 after end 1; pass on_bad='skip' to skip bad records"
    )
    assert err.with_fix(None) == err.message
    assert isinstance(err, DataError)


def test_a_value_outside_the_choices_is_never_suggested() -> None:
    parser = build_parser()
    args = parser.parse_args(["data", "stats", "tacos"])
    assert spell_fix(command_parser(parser, args), Fix("on_bad", "ignore", "data.on_bad")) is None


def test_reader_errors_no_longer_hardcode_a_flag(shared_data: Path) -> None:
    with pytest.raises(FixableDataError) as err:
        load_dataset("charades_sta", shared_data, "train")
    assert "--on-bad" not in str(err.value) and "pass on_bad='skip'" in str(err.value)
    assert err.value.fix == SKIP_BAD_RECORDS


# --- the skip fix, followed, on real files ------------------------------------------------------------


def test_data_stats_fix_skips(shared_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["data", "stats", "charades_sta", "--root", str(shared_data), "--split", "train"]
    rc, _, err = _run(capsys, argv)
    assert rc == 2 and err.startswith("higround data stats: error: ")
    fix = _suggested(err)
    assert fix == "--on-bad skip" and _parsed(_apply(argv, fix)).on_bad == "skip"
    rc, out, _ = _run(capsys, _apply(argv, fix))
    assert rc == 0 and "skipped 4 bad record(s): " + ", ".join(CHARADES_BAD) in out


def test_baseline_fix_skips(shared_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["baseline", "prior", "--dataset", "charades_sta", "--root", str(shared_data)]
    argv += ["--train-split", "train", "--eval-split", "test"]
    rc, _, err = _run(capsys, argv)
    assert rc == 2 and "'LEOL6' sentence 0" in err
    fix = _suggested(err)
    assert fix == "--on-bad skip" and _parsed(_apply(argv, fix)).on_bad == "skip"
    rc, out, _ = _run(capsys, _apply(argv, fix))
    assert rc == 0 and "skipped 4 bad record(s)" in out and "scored on test (3720 sentences)" in out


def test_evaluate_predictions_fix_skips_and_sets_aside_their_predictions(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    preds = _charades_predictions(shared_data, tmp_path)
    annotations = shared_data / "charades_sta" / "charades_sta_train.txt"
    argv = ["evaluate", "--predictions", str(preds), "--annotations", str(annotations)]
    argv += ["--json", str(tmp_path / "m.json")]
    rc, out, err = _run(capsys, argv)
    assert rc == 2 and out == "" and "'LEOL6' sentence 0" in err
    fix = _suggested(err)
    assert fix == "--on-bad skip" and _parsed(_apply(argv, fix)).on_bad == "skip"
    rc, out, _ = _run(capsys, _apply(argv, fix))
    assert rc == 0 and "charades_sta train: 12404 sentences" in out
    # Not dropped silently, not an unknown key either: set aside, counted and named.
    assert "note: 4 prediction(s) for the skipped bad record(s) not scored" in out
    assert ", ".join(CHARADES_BAD) in out and "keys not in the annotations" not in out
    saved = json.loads((tmp_path / "m.json").read_text())
    assert (saved["sentences"], saved["skipped_records"], saved["skipped_predictions"]) == (12404, 4, 4)
    assert saved["unknown"] == 0 and saved["metrics"]["mIoU"] == pytest.approx(1.0)


def test_evaluate_skip_still_refuses_really_unknown_keys(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    annotations = shared_data / "charades_sta" / "charades_sta_train.txt"
    preds = tmp_path / "stray.json"
    stray = PredictionRecord(key="NOPE#0", video_id="NOPE", spans=((0.0, 1.0),))
    write_predictions(preds, [stray], dataset="charades_sta")
    argv = ["evaluate", "--predictions", str(preds), "--annotations", str(annotations), "--on-bad", "skip"]
    rc, _, err = _run(capsys, [*argv, "--allow-missing"])
    assert rc == 2 and "'NOPE#0'" in err and "--allow-unknown" in err


# --- train, predict and evaluate --checkpoint on a corrupted copy of the real TACoS paragraphs ---------


def _train_argv(root: Path, features: Path, tiny_model: list[str], out: Path) -> list[str]:
    return [
        "train",
        "--config",
        str(REPO / "configs" / "hscnet" / "tacos.yaml"),
        f"data.root={root}",
        f"data.features={features}",
        "data.train_split=test",
        "data.val_split=test",
        "data.limit=8",
        "data.batch_size=4",
        "data.num_workers=0",
        *tiny_model,
        "trainer.max_epochs=1",
        "trainer.accelerator=cpu",
        "trainer.progress_bar=false",
        f"output_dir={out}",
    ]


@pytest.fixture(scope="module")
def checkpoint(
    tmp_path_factory: pytest.TempPathFactory,
    corrupted_tacos: Path,
    tacos_features: Path,
    tiny_model: list[str],
) -> tuple[Path, str]:
    """``higround train`` on the corrupted copy: fails with its suggestion, then runs with it.

    Returns the best checkpoint and the first run's error.
    """
    out = tmp_path_factory.mktemp("runs")
    argv = _train_argv(corrupted_tacos, tacos_features, tiny_model, out)
    err = io.StringIO()  # capsys is function-scoped: capture by hand
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        assert main(argv) == 2
    message = err.getvalue().strip().splitlines()[-1]
    fix = _suggested(message + "\n")
    assert main(_apply(argv, fix)) == 0
    return out / "hscnet_tacos" / "checkpoints" / "best.ckpt", message


def test_train_fix_is_an_override_and_trains(checkpoint: tuple[Path, str]) -> None:
    best, message = checkpoint
    assert message.startswith("higround train: error: ") and "'s30-d40.avi' sentence 1" in message
    fix = _suggested(message + "\n")
    assert fix == "data.on_bad=skip"
    assert _parsed(["train", "--config", "c.yaml", fix]).overrides == ["data.on_bad=skip"]
    assert best.is_file()


@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_checkpoint_commands_take_on_bad(
    checkpoint: tuple[Path, str],
    corrupted_tacos: Path,
    tacos_features: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    command: str,
) -> None:
    best, _ = checkpoint
    argv = [command, "--checkpoint", str(best), "--split", "test", "--annotations-root", str(corrupted_tacos)]
    argv += ["--features", str(tacos_features), "--limit", "4", "--device", "cpu"]
    if command == "predict":
        argv += ["--out", str(tmp_path / "preds.json")]
    # The checkpoint was trained with data.on_bad=skip: its recipe is the default, --on-bad overrides it.
    rc, out, err = _run(capsys, [*argv, "--on-bad", "error"])
    assert rc == 2 and "'s30-d40.avi' sentence 1" in err
    fix = _suggested(err)
    assert fix == "--on-bad skip" and _parsed(_apply([*argv, "--on-bad", "error"], fix)).on_bad == "skip"
    rc, out, _ = _run(capsys, _apply([*argv, "--on-bad", "error"], fix))
    assert rc == 0
    if command == "predict":
        written = json.loads((tmp_path / "preds.json").read_text())["predictions"]
        assert "s30-d40.avi#1" not in {r["key"] for r in written} and "s30-d40.avi#0" in {
            r["key"] for r in written
        }
    else:
        assert "skipped 1 bad record(s): s30-d40.avi#1" in out


# --- a file read with the wrong reader ---------------------------------------------------------------


def test_data_stats_wrong_reader_names_the_right_one(
    shared_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = shared_data / "tacos" / "test.json"
    argv = ["data", "stats", "activitynet_captions", "--file", str(path), "--on-bad", "skip"]
    rc, out, err = _run(capsys, argv)
    assert rc == 2 and out == "" and str(path) in err
    assert "looks like a tacos file (timestamps in frames with fps/num_frames)" in err
    fix = _suggested(err, verb="use", purpose="")
    assert fix == "higround data stats tacos ..."
    rc, out, _ = _run(capsys, _apply(argv, fix))
    assert rc == 0 and "tacos test" in out


def test_evaluate_wrong_dataset_names_the_flag(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    annotations = shared_data / "tacos" / "test.json"
    dataset = load_dataset("tacos", shared_data, "test")
    preds = tmp_path / "preds.json"
    write_predictions(preds, [PredictionRecord(s.key, p.video_id, (s.span,)) for p, s in dataset.sentences()])
    argv = ["evaluate", "--predictions", str(preds), "--annotations", str(annotations)]
    rc, _, err = _run(capsys, [*argv, "--dataset", "activitynet_captions", "--on-bad", "skip"])
    assert rc == 2 and "looks like a tacos file" in err
    fix = _suggested(err, verb="use", purpose="")
    assert fix == "--dataset tacos"
    rc, out, _ = _run(capsys, _apply([*argv, "--dataset", "activitynet_captions"], fix))
    assert rc == 0 and "tacos test: 4001 sentences" in out


def test_train_wrong_dataset_names_the_override(
    shared_data: Path,
    tacos_features: Path,
    tiny_model: list[str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = _train_argv(shared_data / "tacos", tacos_features, tiny_model, tmp_path)
    # activitynet_captions' "test" is tacos/test.json here: the 2D-TAN TACoS file.
    rc, _, err = _run(capsys, [*argv, "data.dataset=activitynet_captions"])
    assert rc == 2 and "tacos/test.json: not in the activitynet_captions layout" in err
    fix = _suggested(err, verb="use", purpose="")
    assert fix == "data.dataset=tacos"
    assert _parsed([*argv, fix]).overrides[-1] == "data.dataset=tacos"


def test_checkpoint_wrong_folder_names_annotations_root(
    checkpoint: tuple[Path, str],
    shared_data: Path,
    tacos_features: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The checkpoint fixes the benchmark: with another benchmark's file, the folder is the fix."""
    best, _ = checkpoint
    # The 2D-TAN file under the paragraph file's name (as a mixed-up download would have it).
    (tmp_path / "paragraphs_test.json").write_bytes((shared_data / "tacos" / "test.json").read_bytes())
    argv = ["evaluate", "--checkpoint", str(best), "--split", "test", "--device", "cpu"]
    argv += ["--annotations-root", str(tmp_path), "--features", str(tacos_features)]
    rc, _, err = _run(capsys, argv)
    assert rc == 2 and "not in the tacos_paragraphs layout: it looks like a tacos file" in err
    assert "--dataset" not in err and "give --annotations-root a folder of tacos_paragraphs files" in err


def test_train_on_a_split_with_every_record_bad_fails(
    shared_data: Path,
    tacos_features: Path,
    tiny_model: list[str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Used to exit 0 with "No training batches" and no checkpoint."""
    records = json.loads((shared_data / "tacos" / "paragraphs_test.json").read_text())
    for record in records:
        record["duration"] = 0
    (tmp_path / "paragraphs_test.json").write_text(json.dumps(records))
    argv = _train_argv(tmp_path, tacos_features, tiny_model, tmp_path / "runs")
    rc, _, err = _run(capsys, [*argv, "data.on_bad=skip"])
    assert rc == 2 and f"{tmp_path / 'paragraphs_test.json'}: every record is bad" in err
    assert "of 25 video(s)" in err and "'s30-d40.avi': unknown video duration" in err
    assert not (tmp_path / "runs" / "hscnet_tacos" / "checkpoints").exists()
