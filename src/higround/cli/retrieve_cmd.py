"""``higround retrieve``: rank a feature store's videos for a paragraph (or paragraphs for a video)
with a retrieval checkpoint (HSE, FSE; docs/hse.md), optionally grounding the paragraph in the
best videos with a grounding checkpoint; and the report of ``evaluate --checkpoint`` for such a
checkpoint.

``higround retrieve --checkpoint C [--features F] [--annotations A --split S]
(--paragraph TEXT | --paragraph-file FILE | --video ID) [--top K] [--cache FILE] [--refresh-cache]
[--ground-checkpoint G] [--json OUT]`` embeds the store's videos once into a cache file (atomic;
reused while the checkpoint, the store and the annotations are unchanged:
:mod:`higround.engine.retriever`), embeds the query and prints the ranking. ``--annotations`` is an
annotation file, or a folder with ``--split`` (``--split`` alone reads the checkpoint's
``data.root``); it names the candidate videos and, for HSE's protocol (clips = annotated
segments), their segments; ``--video`` ranks its paragraphs.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from higround.cli.options import positive_int
from higround.errors import ConfigError
from higround.io import atomic_write_text, check_writable

# How the directions are named in the report, with their metric prefix.
DIRECTIONS = (("paragraph -> video", "p2v"), ("video -> paragraph", "v2p"))
RECALLS = (1, 5, 10, 50)


def register(sub: Any) -> None:
    """Add ``retrieve`` to the top-level sub-parsers."""
    parser = sub.add_parser(
        "retrieve",
        help="rank videos for a paragraph (or paragraphs for a video) with a retrieval checkpoint",
    )
    parser.add_argument("--checkpoint", required=True, help="a retrieval .ckpt or .safetensors (+ .json)")
    parser.add_argument("--features", help="feature store (default: the checkpoint's data.features)")
    parser.add_argument(
        "--feature-key", help="entry template in the store; 'auto': detect (default: the checkpoint's)"
    )
    parser.add_argument("--annotations", help="annotation file, or folder with --split: the candidates")
    parser.add_argument(
        "--split", help="split of an --annotations folder (alone: of the checkpoint's data.root)"
    )
    parser.add_argument("--dataset", help="benchmark of the annotations (default: the checkpoint's)")
    query = parser.add_mutually_exclusive_group(required=True)
    query.add_argument("--paragraph", help="the paragraph to find videos for")
    query.add_argument("--paragraph-file", type=Path, help="a UTF-8 file holding the paragraph")
    query.add_argument("--video", help="a video id: rank the annotations' paragraphs for it")
    parser.add_argument(
        "--top", type=positive_int, default=10, help="how many to print (default %(default)s)"
    )
    parser.add_argument("--cache", type=Path, help="embedding cache file (default: under ~/.cache/higround)")
    parser.add_argument("--refresh-cache", action="store_true", help="recompute the cache whatever it holds")
    parser.add_argument(
        "--ground-checkpoint", help="a grounding checkpoint: ground the paragraph in each retrieved video"
    )
    parser.add_argument("--batch-size", type=positive_int, default=32, help="videos per batch")
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, ...")
    parser.add_argument("--on-bad", choices=("error", "skip"), default="error", help="bad annotation records")
    parser.add_argument("--json", metavar="OUT", help="also write the ranking to this JSON file")
    parser.set_defaults(func=run)


def _paragraph_text(args: argparse.Namespace) -> str | None:
    if args.paragraph is not None:
        return str(args.paragraph)
    if args.paragraph_file is not None:
        path = Path(args.paragraph_file)
        if not path.is_file():
            raise FileNotFoundError(f"paragraph file not found: {path}")
        try:
            return path.read_text(encoding="utf-8")
        except UnicodeDecodeError as err:
            raise ConfigError(f"{path}: not UTF-8 text (byte {err.start})") from None
    return None


def run(args: argparse.Namespace) -> int:
    """Index the store (through the cache), rank, print, write ``--json``."""
    from higround.devices import resolve_device
    from higround.engine.retriever import Retriever, ground_hits, query_sentences

    if args.json:
        check_writable(args.json, "--json output")
    if args.cache is not None:
        check_writable(args.cache, "--cache")
    text = _paragraph_text(args)
    if text is not None:
        query_sentences(text)  # an empty query fails before the store is embedded
    if args.ground_checkpoint is not None and text is None:
        raise ConfigError("--ground-checkpoint grounds a paragraph: give --paragraph or --paragraph-file")
    device = resolve_device(args.device)
    retriever = Retriever.from_checkpoint(args.checkpoint, device)
    data = retriever.config.data
    features = args.features or data.features
    if features is None:
        raise ConfigError(f"{args.checkpoint}: its recipe names no feature store: pass --features FILE")
    if args.features is None and not Path(features).exists():
        raise FileNotFoundError(
            f"{features} not found: it is data.features of the checkpoint {args.checkpoint}'s recipe; "
            "pass --features FILE to read it from elsewhere"
        )
    annotations = args.annotations
    if annotations is None and args.split is not None:
        annotations = data.root
    if args.video is not None and annotations is None:
        raise ConfigError("--video ranks the paragraphs of annotations: give --annotations A (--split S)")
    grounder = None
    if args.ground_checkpoint is not None:
        from higround.engine.api import Grounder

        grounder = Grounder.from_checkpoint(args.ground_checkpoint, device)  # checked before embedding
    index = retriever.index(
        features,
        annotations=annotations,
        split=args.split,
        dataset=args.dataset,
        feature_key=args.feature_key,
        cache=args.cache,
        refresh=args.refresh_cache,
        on_bad=args.on_bad,
        batch_size=args.batch_size,
    )
    if args.video is not None:
        index.position(args.video)  # an unknown video fails before anything is printed
    clips = retriever.clip_source or "none (FSE)"
    where = ""
    if annotations is not None:
        where = f", annotated in {annotations}" + (f" ({args.split})" if args.split else "")
    print(
        f"{retriever.family.name} checkpoint {args.checkpoint}: {len(index)} videos of {features}{where}; "
        f"clips: {clips}"
    )
    print(f"cache: {index.cache} ({'reused' if index.reused else 'written'})")
    record: dict[str, Any] = {
        "format": "higround.retrieval.v1",
        "checkpoint": str(args.checkpoint),
        "features": str(features),
        "videos": len(index),
    }
    if args.video is not None:
        hits = retriever.rank_paragraphs(args.video, index, args.top, batch_size=args.batch_size)
        print(f"paragraphs for video {args.video}:")
        print(f"{'rank':>4}  {'score':>7}  video")
        for hit in hits:
            print(f"{hit.rank:>4}  {hit.score:7.4f}  {hit.video_id}  {_short(hit.text)}")
        record.update(video=args.video, paragraphs=[asdict(h) for h in hits])
    else:
        assert text is not None
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            video_hits = retriever.retrieve(text, index, args.top)
        for warning in caught:
            print(f"warning: {warning.message}", file=sys.stderr)
        print(f"{'rank':>4}  {'score':>7}  video")
        groundings = ground_hits(grounder, index, text, video_hits) if grounder is not None else []
        for i, video_hit in enumerate(video_hits):
            print(f"{video_hit.rank:>4}  {video_hit.score:7.4f}  {video_hit.video_id}")
            if groundings:
                for s, (start, end) in enumerate(groundings[i].spans):
                    print(f"{'':15}sentence {s + 1}: {start:7.2f} - {end:7.2f} s")
        record.update(paragraph=text, videos_ranked=[asdict(h) for h in video_hits])
        if groundings:
            record["groundings"] = {h.video_id: g.spans for h, g in zip(video_hits, groundings, strict=True)}
    if args.json:
        atomic_write_text(Path(args.json), json.dumps(record, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


def _short(text: str, width: int = 70) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def format_retrieval(metrics: Mapping[str, float]) -> str:
    """The ``"higround"``-convention metrics as a table: recalls in %, ranks as ranks, and rsum."""
    header = f"{'direction':<20}" + "".join(f"{f'R@{k}':>8}" for k in RECALLS) + f"{'median':>9}{'mean':>9}"
    lines = [header]
    for title, prefix in DIRECTIONS:
        recalls = "".join(f"{100 * metrics[f'{prefix}/R@{k}']:8.2f}" for k in RECALLS)
        ranks = f"{metrics[f'{prefix}/median_rank']:9.1f}{metrics[f'{prefix}/mean_rank']:9.2f}"
        lines.append(f"{title:<20}{recalls}{ranks}")
    lines.append(f"rsum (R@1 + R@5 + R@50 of both directions, %): {100 * metrics['rsum']:.2f}")
    return "\n".join(lines)


def run_evaluate(args: argparse.Namespace, split_run: Any) -> int:
    """``evaluate --checkpoint`` of a retrieval checkpoint: embed ``--split``, rank it both ways,
    print (``--rank-convention hse``: CMHSE's lines) and write ``--json``."""
    from higround.engine.evaluation import SplitRun
    from higround.engine.retrieval import embed_loader, retrieval_config, retrieval_scores
    from higround.metrics.retrieval import format_hse

    assert isinstance(split_run, SplitRun)
    dataset = split_run.data.annotations(args.split)
    loader = split_run.data.loader(args.split, pin_memory=split_run.device.type == "cuda")
    embeddings = embed_loader(split_run.model, split_run.config.family, loader, split_run.device)
    convention = args.rank_convention
    metrics = retrieval_scores(embeddings, convention)
    model_config = retrieval_config(split_run.config)
    clips = model_config.clip_source(False) or "none (FSE)"
    name = split_run.config.data.dataset
    print(f"{name} {dataset.split}: {len(embeddings)} videos with their paragraphs ({dataset.report.source})")
    print(
        f"checkpoint: {args.checkpoint} (device {split_run.device}); clips: {clips}; ranks are 1-based, a "
        "tie counts against the query"
    )
    if dataset.report.clamped or dataset.report.skipped:
        print(f"note: {dataset.report.summary()}")
    print(f"note: split {args.split!r}: {split_run.data.unknown_words(args.split).describe()}")
    if convention == "hse":
        print("convention: hse (CMHSE evaluation.py): values in %, r10 is R@50, medr = floor(median)")
        print(format_hse(metrics))
    else:
        print(format_retrieval(metrics))
    if args.json:
        from higround.cli.evaluate_cmd import write_metrics_json

        info = {
            "dataset": name,
            "split": dataset.split,
            "annotations": dataset.report.source,
            "checkpoint": str(args.checkpoint),
            "videos": len(embeddings),
            "rank_convention": convention,
            "clips": model_config.clip_source(False),
        }
        write_metrics_json(args.json, metrics, info)
        print(f"wrote {args.json}")
    return 0
