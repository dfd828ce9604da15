"""HSE / FSE retrieval speed: embedding throughput and the latency of ranking a collection.

Builds the model of a retrieval recipe (default ``configs/hse/activitynet_captions.yaml``: C3D 500-d
frames, GRUs of 1024) with GloVe-sized words (300-d) and times, through the public
:class:`~higround.engine.retriever.Retriever` (the code path of ``higround retrieve``):

* embedding: ``Retriever.embed_videos`` over ``--embed-videos`` random videos of ``--frames``
  frames each (uniform clips: ``model.eval_clips=uniform``, no annotation needed), reported as
  videos/s; the same for paragraphs (``embed_paragraphs``, ``--sentences`` x ``--words``);
* ranking: one paragraph against an index of N cached video embeddings (``Retriever.retrieve``:
  embed the query, N cosine scores, sort), for each N of ``--videos``, and the scoring + sort part
  alone; the index is random unit vectors, what a cached store holds.

Speed does not depend on the values. Timed: median of ``--steps`` after one warm-up. Run from the
repository root (docs/benchmarks.md holds the figures)::

    python benchmarks/hse_speed.py --threads 2
    python benchmarks/hse_speed.py --recipe configs/hse/activitynet_captions_fse.yaml --videos 5000
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from higround.data.synthetic import SyntheticConfig
from higround.engine.config import load_config
from higround.engine.retriever import Retriever, VideoIndex
from higround.models import count_parameters
from higround.text.vocab import Vocabulary

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "configs" / "hse" / "activitynet_captions.yaml"
WORD_DIM = 300  # GloVe 300-d, the paper's vectors
VOCAB = 10_000


def build(recipe: Path, overrides: Sequence[str] = ()) -> Retriever:
    """A :class:`Retriever` around the recipe's model, randomly initialised (seed 0)."""
    config = load_config(recipe, ["model.eval_clips=uniform", *overrides])
    family = config.family
    # A procedural recipe leaves video_dim to the data: its generator's default size.
    video_dim = int(config.model.get("video_dim") or SyntheticConfig().feature_dim)
    model_config = family.config({**config.model, "video_dim": video_dim, "word_dim": WORD_DIM})
    torch.manual_seed(0)
    vocab = Vocabulary([f"w{i}" for i in range(VOCAB)])
    model = family.build_model(model_config, torch.randn(len(vocab), WORD_DIM))
    return Retriever(model, vocab, config)


def _timed(fn: Callable[[], Any], steps: int) -> float:
    """Median seconds of ``steps`` calls after one warm-up."""
    fn()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(
    retriever: Retriever,
    embed_videos: int,
    frames: int,
    sentences: int,
    words: int,
    videos: Sequence[int],
    steps: int,
) -> dict[str, Any]:
    """Embedding throughput of both sides and the ranking latency for each index size."""
    rng = np.random.default_rng(0)
    dim = retriever.video_dim
    features = [rng.standard_normal((frames, dim), dtype=np.float32) for _ in range(embed_videos)]
    paragraph = [" ".join(f"w{i}" for i in rng.integers(0, VOCAB, words)) for _ in range(sentences)]
    video_s = _timed(lambda: retriever.embed_videos(features), steps)
    paragraph_s = _timed(lambda: retriever.embed_paragraphs([paragraph] * embed_videos), steps)
    query = retriever.embed_paragraphs([paragraph])[0][0]
    size = query.shape[0]
    ranking = []
    for n in videos:
        emb = rng.standard_normal((n, size), dtype=np.float32)
        emb /= np.linalg.norm(emb, axis=1, keepdims=True)
        index = VideoIndex([f"v{i}" for i in range(n)], emb, Path("random"))
        seconds = _timed(lambda index=index: retriever.retrieve(paragraph, index, top=10), steps)
        scoring = _timed(lambda emb=emb: np.argsort(-(emb @ query), kind="stable")[:10], steps)
        ranking.append(
            {"videos": n, "ms": 1000 * seconds, "score_ms": 1000 * scoring, "index_mib": emb.nbytes / 2**20}
        )
    return {
        "parameters": count_parameters(retriever.model),
        "embed_dim": size,
        "videos_per_s": embed_videos / video_s,
        "paragraphs_per_s": embed_videos / paragraph_s,
        "ranking": ranking,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Measure and print the tables with the machine they ran on."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", type=Path, default=RECIPE, help="a retrieval recipe")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument("--embed-videos", type=int, default=64, help="videos (and paragraphs) embedded")
    parser.add_argument("--frames", type=int, default=160, help="frames per video (capped by the model)")
    parser.add_argument("--sentences", type=int, default=4, help="sentences per paragraph")
    parser.add_argument("--words", type=int, default=14, help="words per sentence")
    parser.add_argument(
        "--videos", type=int, nargs="+", default=[1000, 5000, 20000, 100000], help="index sizes ranked"
    )
    parser.add_argument("--steps", type=int, default=5, help="timed repetitions (median)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    retriever = build(args.recipe)
    r = measure(
        retriever, args.embed_videos, args.frames, args.sentences, args.words, args.videos, args.steps
    )
    print(
        f"recipe {args.recipe.name}: {r['parameters'] / 1e6:.2f} M parameters, embeddings of {r['embed_dim']}"
    )
    print("\n| embedding | per second |\n|---|---:|")
    print(f"| videos ({args.frames} frames) | {r['videos_per_s']:.1f} |")
    print(f"| paragraphs ({args.sentences} x {args.words} words) | {r['paragraphs_per_s']:.1f} |")
    print(
        "\n| videos ranked for one paragraph | retrieve ms | of which scoring + sort ms | index MiB |"
        "\n|---:|---:|---:|---:|"
    )
    for row in r["ranking"]:
        print(f"| {row['videos']:,} | {row['ms']:.2f} | {row['score_ms']:.2f} | {row['index_mib']:.1f} |")
    print(
        f"\n{platform.processor() or 'cpu'}; torch {torch.__version__}, {torch.get_num_threads()} threads; "
        f"fp32; median of {args.steps} after one warm-up"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
