"""``higround ground VIDEO --text "..." --checkpoint CKPT``: ground a paragraph in a video file.

Extracts the video's clip features with the backbone and clip sampling the checkpoint was trained
on (or reads them from ``--features STORE``), splits the paragraph into sentences
(:func:`higround.text.split_sentences`), predicts, prints one ``start - end`` line per sentence
(``--json``: one JSON object instead) and writes a timeline PNG (``--png``, default
``<video id>.timeline.png``) with the video's thumbnails along the time axis and one bar per sentence.
A checkpoint/feature mismatch (feature size, backbone, clip length) is an error (exit status 2).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from higround.errors import ConfigError


def register(sub: Any) -> None:
    """Add ``ground`` to the top-level sub-parsers."""
    parser = sub.add_parser("ground", help="ground a paragraph in a video file with a trained checkpoint")
    parser.add_argument("video", type=Path, help="the video file (or, with --features, its id in the store)")
    text = parser.add_mutually_exclusive_group(required=True)
    text.add_argument("--text", help="the paragraph; sentences end at . ! ? before a space, or a newline")
    text.add_argument("--text-file", type=Path, help="a UTF-8 file holding the paragraph")
    parser.add_argument("--checkpoint", required=True, help="a .ckpt or .safetensors (+ .json) file")
    parser.add_argument("--features", type=Path, help="read the video's features from this store instead")
    parser.add_argument("--backbone", help="extract with this backbone (default: the checkpoint's)")
    parser.add_argument(
        "--fps", type=float, help="sample this many frames per second (default: the checkpoint's)"
    )
    parser.add_argument("--weights", help="backbone weights file (default: its package / torch hub cache)")
    parser.add_argument("--batch-size", type=int, default=16, help="clips per backbone batch")
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda:1, ...")
    parser.add_argument(
        "--png", type=Path, help="timeline picture to write (default: <video id>.timeline.png)"
    )
    parser.add_argument("--thumbnails", type=int, default=8, help="thumbnails along the time axis (0: none)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def _features(args: argparse.Namespace, grounder: Any) -> Any:
    """The video's :class:`~higround.video.extract.VideoFeatures`, read or extracted."""
    from higround.video.decode import probe_duration
    from higround.video.extract import read_video_features

    if args.features is not None:
        # A store without clip times needs the duration: from the file's metadata when it is here.
        duration = probe_duration(args.video) if args.video.is_file() else None
        return read_video_features(args.features, args.video.stem, duration)
    from tqdm import tqdm

    with tqdm(
        desc=f"extracting {args.video.name}", unit="clip", leave=False, disable=args.no_progress
    ) as bar:
        return grounder.encode_video(args.video, on_batch=bar.update, **_extract_options(args))


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
    from higround.video.decode import thumbnails
    from higround.video.grounding import grounding_panel
    from higround.viz.timeline import save_timeline

    paragraph = args.text if args.text is not None else args.text_file.read_text(encoding="utf-8")
    sentences = split_sentences(paragraph)
    if not sentences:
        raise ConfigError("ground: the text holds no sentence")
    grounder = Grounder.from_checkpoint(args.checkpoint, resolve_device(args.device))
    video = _features(args, grounder)
    result = grounder.ground_video(video, sentences)
    pictures: list[tuple[float, np.ndarray]] = []
    if args.thumbnails > 0 and args.video.is_file():
        times = (np.arange(args.thumbnails) + 0.5) * video.duration / args.thumbnails
        pictures = thumbnails(args.video, times)
    png = args.png or Path(f"{video.video_id}.timeline.png")
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
            "timeline": str(png),
        }, indent=1))  # fmt: skip
        return 0
    print(f"{video.video_id}: {video.duration:.2f} s, {len(sentences)} sentence(s)")
    for i, (text, (start, end)) in enumerate(zip(sentences, result.spans, strict=True)):
        print(f"S{i + 1:<3} {start:8.2f} - {end:8.2f}  {text}")
    print(f"timeline: {png}")
    return 0
