"""Annotation readers: every benchmark's release format -> :mod:`higround.data.schema`.

>>> ds = load_dataset("activitynet_captions", "data/activitynet_captions", "val_2")  # doctest: +SKIP
>>> len(ds.videos), ds.sentence_count()  # doctest: +SKIP
(4885, 17031)

Each reader parses its file into a staging table; validation, the bad-record policy
(``on_bad``, ``clamp_tolerance``) and paragraph splitting (``max_sentences``) are shared, so every
benchmark follows the rules documented in docs/data.md.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from higround.data.readers._layout import LayoutError
from higround.data.readers._table import LoadOptions, OnBad, Table
from higround.data.readers.captions import parse_captions
from higround.data.readers.charades import parse_charades_sta
from higround.data.readers.didemo import parse_didemo
from higround.data.readers.qvhighlights import parse_qvhighlights
from higround.data.readers.tacos import parse_tacos_frames, parse_tacos_paragraphs
from higround.data.schema import GroundingDataset
from higround.errors import ConfigError, DataError

__all__ = [
    "DATASETS",
    "DEFAULT_CLAMP_TOLERANCE",
    "DatasetSpec",
    "LayoutError",
    "OnBad",
    "available_datasets",
    "load_annotation_file",
    "load_dataset",
]

# Seconds an end may pass the video duration and still be clamped to it. The real releases overshoot
# by at most 0.01 s (ActivityNet, ActivityNet-CG), 0.51 s (TACoS 2D-TAN: 15 frames) and 1.54 s
# (Charades-STA and Charades-CG, whose csv lengths are shorter than the annotated ends).
DEFAULT_CLAMP_TOLERANCE = 2.0

Parser = Callable[[Path, str, Table], None]


@dataclass(frozen=True)
class DatasetSpec:
    """How to find and parse one benchmark's annotation files.

    ``pattern`` names a split's file (``{split}`` replaced); ``folder`` is the benchmark's usual
    folder under a data root; ``aliases`` maps other split names to file splits, used only when the
    alias's own file is absent (2D-TAN's ``val``/``test`` for ActivityNet's ``val_1``/``val_2``).
    """

    name: str
    description: str
    folder: str
    pattern: str
    splits: tuple[str, ...]
    parse: Parser
    aliases: Mapping[str, str] = field(default_factory=dict)

    def split_of(self, path: Path) -> str:
        """The split a file name stands for (its stem when it does not follow ``pattern``)."""
        prefix, _, suffix = self.pattern.partition("{split}")
        name = path.name
        if name.startswith(prefix) and name.endswith(suffix) and len(name) > len(prefix) + len(suffix):
            return name[len(prefix) : len(name) - len(suffix)]
        return path.stem

    def locate(self, root: Path, split: str) -> tuple[Path, str]:
        """The annotation file of ``split`` in ``root`` or ``root/folder``, and its file split."""
        tried = []
        for file_split in (split, self.aliases.get(split)):
            if file_split is None:
                continue
            for folder in (root, root / self.folder):
                path = folder / self.pattern.format(split=file_split)
                if path.is_file():
                    return path, file_split
                tried.append(str(path))
        raise FileNotFoundError(
            f"no {self.name} annotation file for split {split!r}: looked for {', '.join(tried)} "
            f"(known splits: {', '.join(self.splits)})"
        )


def _captions(name: str, description: str, splits: tuple[str, ...], **kw: Mapping[str, str]) -> DatasetSpec:
    """A benchmark in the ActivityNet-Captions layout (``{split}.json``)."""
    return DatasetSpec(name, description, name, "{split}.json", splits, parse_captions, **kw)


_CG_SPLITS = ("train", "test_trivial", "novel_composition", "novel_word")

DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        _captions(
            "activitynet_captions",
            "ActivityNet-Captions (one paragraph per video; VPG papers test on val_2)",
            ("train", "val_1", "val_2"),
            aliases={"val": "val_1", "test": "val_2"},
        ),
        DatasetSpec(
            "tacos",
            "TACoS, 2D-TAN release (frame timestamps; one paragraph of all sentences per video)",
            "tacos",
            "{split}.json",
            ("train", "val", "test"),
            parse_tacos_frames,
        ),
        DatasetSpec(
            "tacos_paragraphs",
            "TACoS paragraphs as the public VPG code groups them (several paragraphs per video)",
            "tacos",
            "paragraphs_{split}.json",
            ("train", "val", "test"),
            parse_tacos_paragraphs,
        ),
        DatasetSpec(
            "charades_sta",
            "Charades-STA (durations from Charades_v1_{split}.csv)",
            "charades_sta",
            "charades_sta_{split}.txt",
            ("train", "test"),
            parse_charades_sta,
        ),
        _captions("charades_cg", "Charades-CG compositional splits", _CG_SPLITS),
        _captions("activitynet_cg", "ActivityNet-CG compositional splits", _CG_SPLITS),
        DatasetSpec(
            "qvhighlights",
            "QVHighlights (one single-sentence paragraph per query; several windows per query)",
            "qvhighlights",
            "highlight_{split}_release.jsonl",
            ("train", "val"),
            parse_qvhighlights,
        ),
        DatasetSpec(
            "didemo",
            "DiDeMo as HSE's code releases it (times in feature frames; one paragraph per video)",
            "didemo",
            "{split}_data_bwzhang.json",
            ("train", "val", "test"),
            parse_didemo,
        ),
    )
}


def available_datasets() -> list[str]:
    """Names accepted by :func:`load_dataset`, sorted."""
    return sorted(DATASETS)


def _spec(name: str) -> DatasetSpec:
    try:
        return DATASETS[name]
    except KeyError:
        raise ConfigError(f"unknown dataset {name!r}; known: {', '.join(available_datasets())}") from None


def _options(on_bad: str, max_sentences: int | None, clamp_tolerance: float) -> LoadOptions:
    """Checked reader options."""
    if on_bad not in ("error", "skip"):
        raise ConfigError(f"on_bad must be 'error' or 'skip', not {on_bad!r}")
    if max_sentences is not None and max_sentences < 1:
        raise ConfigError(f"max_sentences must be at least 1, not {max_sentences}")
    if not (math.isfinite(clamp_tolerance) and clamp_tolerance >= 0):
        raise ConfigError(f"clamp_tolerance must be a finite number >= 0, not {clamp_tolerance}")
    return LoadOptions(cast(OnBad, on_bad), max_sentences, float(clamp_tolerance))


def _read(spec: DatasetSpec, path: Path, split: str, options: LoadOptions) -> GroundingDataset:
    table = Table(str(path), spec.name)
    spec.parse(path, split, table)
    return table.build(spec.name, split, options)


def load_dataset(
    name: str,
    root: str | Path,
    split: str,
    *,
    on_bad: OnBad = "error",
    max_sentences: int | None = None,
    clamp_tolerance: float = DEFAULT_CLAMP_TOLERANCE,
) -> GroundingDataset:
    """Load one split of benchmark ``name`` from ``root`` (its folder, or a data root holding it).

    ``on_bad="error"`` raises :class:`~higround.errors.DataError` on the first bad record (naming
    the file, video id and sentence index); ``"skip"`` leaves bad records out and lists them in
    ``report.skipped``. An end past the video duration by at most ``clamp_tolerance`` seconds is
    clamped and counted in ``report.clamped``. ``max_sentences=K`` splits longer paragraphs into
    consecutive chunks of at most K sentences. The returned ``split`` is the file's split (``val_1``
    when ``val`` was asked for ActivityNet and only ``val_1.json`` exists).
    """
    spec = _spec(name)
    options = _options(on_bad, max_sentences, clamp_tolerance)
    path, file_split = spec.locate(Path(root), split)
    return _read(spec, path, file_split, options)


def load_annotation_file(
    name: str,
    path: str | Path,
    *,
    on_bad: OnBad = "error",
    max_sentences: int | None = None,
    clamp_tolerance: float = DEFAULT_CLAMP_TOLERANCE,
) -> GroundingDataset:
    """Load one annotation file of benchmark ``name`` (options as :func:`load_dataset`).

    The split is read from the file name (``charades_sta_test.txt`` -> ``test``, else the stem);
    Charades-STA's durations csv is ``Charades_v1_{split}.csv`` beside the text file.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        DataError: ``path`` is a folder, or a bad file or record (see :func:`load_dataset`).
    """
    spec = _spec(name)
    options = _options(on_bad, max_sentences, clamp_tolerance)
    file = Path(path)
    if file.is_dir():
        raise DataError(f"annotation file {file} is a folder, not a file")
    if not file.is_file():
        raise FileNotFoundError(f"annotation file not found: {file}")
    return _read(spec, file, spec.split_of(file), options)
