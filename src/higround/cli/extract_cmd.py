"""``higround extract``: decode videos, run a visual backbone, write the HDF5 feature store.

``higround extract VIDEOS_OR_FOLDERS... --out features.h5 [--backbone efficientnet-lite0 --fps 1]``
writes one ``(T, D)`` entry per video (named by the file's stem) that ``higround train`` reads with
``data.features=features.h5``. Videos already in the store are skipped (resume); ``--shard i/n``
(default: ``RANK/WORLD_SIZE`` under torchrun) splits the list across processes.

Exit status: 0 when every video is in the store; 1 when some video could not be decoded (each is
named on stderr, the others are written); 2 on a usage or configuration error, or an ``--out``
that cannot be written (checked before any video is decoded).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from higround.cli.options import positive_int
from higround.errors import ConfigError
from higround.io import check_writable


def _shard(text: str) -> tuple[int, int]:
    index, _, count = text.partition("/")
    try:
        return int(index), int(count)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"--shard expects i/n, e.g. 0/4, got {text!r}") from err


def register(sub: Any) -> None:
    """Add ``extract`` to the top-level sub-parsers."""
    parser = sub.add_parser("extract", help="extract clip features of video files into an HDF5 store")
    parser.add_argument("videos", nargs="*", type=Path, help="video files, or folders searched for them")
    parser.add_argument("--out", type=Path, help="the HDF5 store to write or extend (.h5)")
    parser.add_argument(
        "--backbone", default=None, help="visual backbone (default efficientnet-lite0; --list)"
    )
    parser.add_argument("--weights", help="backbone weights file (default: its package / torch hub cache)")
    parser.add_argument("--fps", type=float, default=1.0, help="frames sampled per second (default 1)")
    parser.add_argument(
        "--clip-frames", type=positive_int, help="sampled frames per clip (default: the backbone's)"
    )
    parser.add_argument(
        "--stride", type=positive_int, help="sampled frames between clip starts (default: clip frames)"
    )
    parser.add_argument("--batch-size", type=positive_int, default=16, help="clips per backbone batch")
    parser.add_argument("--device", default="auto", help="auto (cuda:LOCAL_RANK when available), cpu, cuda:1")
    parser.add_argument("--shard", type=_shard, help="i/n: extract every n-th video from the i-th")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--list", action="store_true", help="list the backbones and exit")
    parser.set_defaults(func=run)


def video_files(inputs: list[Path]) -> list[Path]:
    """The files given, and the video files (known extensions) under the folders given, sorted."""
    from higround.data.features import VIDEO_SUFFIXES

    found: list[Path] = []
    for item in inputs:
        if item.is_dir():
            found += sorted(p for p in item.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
        else:
            found.append(item)  # a missing file is reported by the extraction, with the others going on
    return found


def run(args: argparse.Namespace) -> int:
    """Extract; see the module docstring for the exit status."""
    from higround.devices import resolve_device
    from higround.video.backbones import DEFAULT_BACKBONE, build_backbone, describe_backbones
    from higround.video.extract import env_shard, extract_store, settings_of

    if args.list:
        for b in describe_backbones():
            shape = f"{b['dim']:>5}-d  {b['size']}px  {b['clip_frames']:>2} frame(s)"
            print(f"{b['name']:<20} {b['kind']:<6} {shape}  {b['description']}")
        return 0
    if args.out is None or not args.videos:
        raise ConfigError("extract: give video files or folders and --out STORE.h5 (or --list)")
    if args.out.suffix.lower() not in (".h5", ".hdf5"):
        raise ConfigError(f"extract: --out {args.out} must end in .h5 or .hdf5")
    check_writable(args.out, "--out")  # before the backbone loads and any video is decoded
    videos = video_files(args.videos)
    if not videos:
        raise ConfigError(f"extract: no video file found in {', '.join(map(str, args.videos))}")
    backbone = build_backbone(args.backbone or DEFAULT_BACKBONE, args.weights, resolve_device(args.device))
    settings = settings_of(backbone, args.fps, args.clip_frames, args.stride)
    shard = args.shard or env_shard()
    print(
        f"extracting {len(videos)} video(s), shard {shard[0]}/{shard[1]}, {settings.describe()} -> {args.out}"
    )
    summary = extract_store(
        videos,
        args.out,
        backbone,
        settings,
        batch_size=args.batch_size,
        shard=shard,
        progress=not args.no_progress,
        report=lambda line: print(line, file=sys.stderr),
    )
    print(summary.line())
    return 1 if summary.failed else 0
