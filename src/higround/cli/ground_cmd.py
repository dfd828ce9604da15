"""``higround ground VIDEO --text "..." --checkpoint CKPT``: ground a paragraph in a video file.

Extracts the video's clip features with the backbone and clip sampling the checkpoint was trained
on (or reads them from ``--features STORE``), splits the paragraph into sentences
(:func:`higround.text.split_sentences`), predicts, prints one ``start - end`` line per sentence
(``--json``: one JSON object instead) and writes a timeline PNG (``--png``, default
``<video id>.timeline.png``, checked before any work) with the video's thumbnails along the time
axis and one bar per sentence. A checkpoint/feature mismatch (feature size, backbone, clip length) is
an error (exit status 2). The video's duration comes from the store when it records one, else from
``--duration`` or the video file; a paragraph whose words are mostly unknown to the checkpoint's
vocabulary gives a warning on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from higround.cli.options import non_negative_int, positive_float, positive_int
from higround.errors import ConfigError
from higround.io import check_writable


def register(sub: Any) -> None:
    """Add ``ground`` to the top-level sub-parsers."""
    parser = sub.add_parser("ground", help="ground a paragraph in a video file with a trained checkpoint")
    parser.add_argument("video", type=Path, help="the video file (or, with --features, its id in the store)")
    text = parser.add_mutually_exclusive_group(required=True)
    text.add_argument("--text", help="the paragraph; sentences end at . ! ? before a space, or a newline")
    text.add_argument("--text-file", type=Path, help="a UTF-8 file holding the paragraph")
    parser.add_argument("--checkpoint", required=True, help="a .ckpt or .safetensors (+ .json) file")
    parser.add_argument("--features", type=Path, help="read the video's features from this store instead")
    parser.add_argument(
        "--duration",
        type=positive_float,
        metavar="SECONDS",
        help="the video's duration, for a store that records none when VIDEO is not the file",
    )
    parser.add_argument("--backbone", help="extract with this backbone (default: the checkpoint's)")
    parser.add_argument(
        "--fps", type=positive_float, help="sample this many frames per second (default: the checkpoint's)"
    )
    parser.add_argument("--weights", help="backbone weights file (default: its package / torch hub cache)")
    parser.add_argument("--batch-size", type=positive_int, default=16, help="clips per backbone batch")
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda:1, ...")
    parser.add_argument(
        "--png", type=Path, help="timeline picture to write (default: <video id>.timeline.png)"
    )
    parser.add_argument(
        "--thumbnails", type=non_negative_int, default=8, help="thumbnails along the time axis (0: none)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def _features(args: argparse.Namespace, grounder: Any) -> Any:
    """The video's :class:`~higround.video.extract.VideoFeatures`, read or extracted.

    Raises:
        ConfigError: no duration known for a store that records none, or a ``--duration`` that
            differs from the one the store records or the file decodes to.
    """
    from higround.video.decode import probe_duration
    from higround.video.extract import MissingDurationError, read_video_features

    if args.features is not None:
        # A store without durations needs one: --duration, else the file's metadata when it is here.
        duration = args.duration
        if duration is None and args.video.is_file():
            duration = probe_duration(args.video)
        try:
            video = read_video_features(args.features, args.video.stem, duration)
        except MissingDurationError as err:
            raise ConfigError(
                f"{args.features} records no duration for video {args.video.stem!r} and {args.video} is "
                "not the video file to read it from: pass --duration SECONDS"
            ) from err
    else:
        from tqdm import tqdm

        with tqdm(
            desc=f"extracting {args.video.name}", unit="clip", leave=False, disable=args.no_progress
        ) as bar:
            video = grounder.encode_video(args.video, on_batch=bar.update, **_extract_options(args))
    # A duration given but not used would scale nothing: say so rather than ignore it.
    if args.duration is not None and abs(video.duration - args.duration) > max(0.5, 0.01 * video.duration):
        source = f"{args.features} records" if args.features is not None else f"{args.video} decodes to"
        raise ConfigError(
            f"--duration {args.duration:g} but {source} {video.duration:.2f} s for video "
            f"{video.video_id!r}; drop --duration"
        )
    return video


def _paragraph(args: argparse.Namespace) -> str:
    if args.text is not None:
        return str(args.text)
    try:
        return str(args.text_file.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise ConfigError(f"--text-file {args.text_file}: not UTF-8 text (byte {err.start})") from err
    except FileNotFoundError as err:
        raise ConfigError(f"--text-file {args.text_file}: no such file") from err
    except OSError as err:
        raise ConfigError(f"--text-file {args.text_file}: cannot read: {err.strerror or err}") from err


def _extract_options(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "backbone": args.backbone,
        "fps": args.fps,
        "weights": args.weights,
        "batch_size": args.batch_size,
        "device": args.device,
    }


def run(args: argparse.Namespace) -> int:
    """Ground, print, draw; returns 0."""
    from higround.devices import resolve_device
    from higround.engine.api import Grounder
    from higround.text.sentences import split_sentences
    from higround.text.vocab import UnknownWordsWarning
    from higround.video.decode import thumbnails
    from higround.video.grounding import grounding_panel
    from higround.viz.timeline import save_timeline

    # The video id is the file's stem both when extracting and when reading a store.
    png = check_writable(args.png or Path(f"{args.video.stem}.timeline.png"), "--png")
    sentences = split_sentences(_paragraph(args))
    if not sentences:
        raise ConfigError("ground: the text holds no sentence")
    grounder = Grounder.from_checkpoint(args.checkpoint, resolve_device(args.device))
    video = _features(args, grounder)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UnknownWordsWarning)
        result = grounder.ground_video(video, sentences)
    for warning in caught:  # ours as one line of this command; any other as Python shows it
        if issubclass(warning.category, UnknownWordsWarning):
            print(f"higround ground: warning: {warning.message}", file=sys.stderr)
        else:
            warnings.showwarning(warning.message, warning.category, warning.filename, warning.lineno)
    pictures: list[tuple[float, np.ndarray]] = []
    if args.thumbnails > 0 and args.video.is_file():
        times = (np.arange(args.thumbnails) + 0.5) * video.duration / args.thumbnails
        pictures = thumbnails(args.video, times)
    panel = grounding_panel(
        f"{video.video_id} ({video.duration:.1f} s)", video.duration, sentences, result.spans,
        result.paragraph_span, pictures,
    )  # fmt: skip
    save_timeline([panel], png)
    if args.json:
        print(json.dumps({
            "video": video.video_id,
            "duration": video.duration,
            "checkpoint": str(args.checkpoint),
            "sentences": [
                {"index": i, "text": text, "start": start, "end": end}
                for i, (text, (start, end)) in enumerate(zip(sentences, result.spans, strict=True))
            ],
            "paragraph": result.paragraph_span,
            "unknown_rate": result.unknown_rate,
            "timeline": str(png),
        }, indent=1))  # fmt: skip
        return 0
    print(
        f"{video.video_id}: {video.duration:.2f} s, {len(sentences)} sentence(s), "
        f"{100 * result.unknown_rate:.1f} % unknown words"
    )
    for i, (text, (start, end)) in enumerate(zip(sentences, result.spans, strict=True)):
        print(f"S{i + 1:<3} {start:8.2f} - {end:8.2f}  {text}")
    print(f"timeline: {png}")
    return 0
