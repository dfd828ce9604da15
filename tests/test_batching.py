"""Paragraph items, the dataset and their vectorised collation, on real ActivityNet annotations."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from higround.data.batch import ParagraphBatch
from higround.data.batching import collate_paragraphs
from higround.data.dataset import ParagraphDataset, encode_paragraph, make_item, sentence_view
from higround.data.features import resample
from higround.data.schema import Paragraph, Sentence
from higround.errors import DataError
from higround.text import Vocabulary, tokenize

DIM = 6


class DictStore:
    """The smallest FeatureStore: features held in a dict."""

    def __init__(self, features: dict[str, np.ndarray]) -> None:
        self.features = features
        self.name = "dict-store"
        self.dim = DIM

    def get(self, video_id: str) -> np.ndarray:
        return self.features[video_id]

    def __contains__(self, video_id: object) -> bool:
        return video_id in self.features

    def video_ids(self) -> list[str]:
        return sorted(self.features)


def _paragraph(video_id: str, record: dict) -> Paragraph:
    sentences = tuple(
        Sentence(text.strip(), float(s), float(e), index=i, key=f"{video_id}#{i}")
        for i, (text, (s, e)) in enumerate(zip(record["sentences"], record["timestamps"], strict=True))
    )
    return Paragraph(video_id, float(record["duration"]), sentences)


@pytest.fixture(scope="module")
def paragraphs(shared_data: Path) -> list[Paragraph]:
    """The first val_2 videos with 3, 5 and 4 sentences (in that order: the longest in the middle)."""
    records = json.loads((shared_data / "activitynet_captions" / "val_2.json").read_text())
    first: dict[int, Paragraph] = {}
    for video_id, record in records.items():
        first.setdefault(len(record["sentences"]), _paragraph(video_id, record))
    return [first[3], first[5], first[4]]


@pytest.fixture(scope="module")
def vocab(paragraphs: list[Paragraph]) -> Vocabulary:
    # min_count=2 leaves rare words out, so <unk> ids appear too.
    return Vocabulary.build((s.text for p in paragraphs for s in p.sentences), min_count=2)


@pytest.fixture(scope="module")
def store(paragraphs: list[Paragraph]) -> DictStore:
    rng = np.random.default_rng(0)
    return DictStore(
        {
            p.video_id: rng.normal(size=(t, DIM)).astype(np.float32)
            for p, t in zip(paragraphs, (7, 40, 13), strict=True)
        }
    )


def test_real_paragraphs_picked(paragraphs: list[Paragraph]) -> None:
    assert [(p.video_id, len(p)) for p in paragraphs][:2] == [("v_uqiMw7tQ1Cc", 3), ("v_EvJqfGXb5Fo", 5)]
    assert len(paragraphs[2]) == 4


def test_collate_layout(paragraphs: list[Paragraph], vocab: Vocabulary, store: DictStore) -> None:
    dataset = ParagraphDataset(paragraphs, store, vocab, num_clips=16)
    batch = collate_paragraphs([dataset[i] for i in range(3)])
    tokens = [[tokenize(s.text) for s in p.sentences] for p in paragraphs]
    n_words = [sum(map(len, t)) for t in tokens]
    assert batch.video.shape == (3, 16, DIM) and batch.video_mask.all()
    for b, p in enumerate(paragraphs):  # 7, 40 and 13 clips resampled to 16
        assert torch.equal(batch.video[b], torch.from_numpy(resample(store.get(p.video_id), 16)))
    assert batch.words.shape == batch.word_mask.shape == (3, max(n_words))
    assert batch.sentence_mask.tolist() == [[True] * 3 + [False] * 2, [True] * 5, [True] * 4 + [False]]
    assert batch.word_mask.sum(1).tolist() == n_words
    # Hand-counted: "Two men both dressed ... with other equipment." has 21 words.
    assert batch.sentence_length[0].tolist() == [len(t) for t in tokens[0]] + [0, 0]
    assert batch.sentence_length[0, 0] == 21
    assert batch.sentence_length.sum(1).tolist() == n_words
    for b, toks in enumerate(tokens):
        n = n_words[b]
        assert batch.words[b, :n].tolist() == [i for t in toks for i in vocab.encode(t)]
        assert batch.word_sentence[b, :n].tolist() == [s for s, t in enumerate(toks) for _ in t]
        assert batch.word_position[b, :n].tolist() == [k for t in toks for k in range(len(t))]
        # Padding holds 0 (ids, positions, lengths, spans) and -1 (sentence indices).
        assert not batch.words[b, n:].any() and not batch.word_position[b, n:].any()
        assert (batch.word_sentence[b, n:] == -1).all()
        assert not batch.spans[b, len(toks) :].any() and not batch.sentence_length[b, len(toks) :].any()
        assert (batch.sentence_index[b, len(toks) :] == -1).all()
    assert (batch.words == vocab.unk_id).any()
    # Spans divided by the duration: v_uqiMw7tQ1Cc (55.15 s), sentence 1 at [4.14, 33.36].
    assert batch.spans[0, 1].tolist() == pytest.approx([4.14 / 55.15, 33.36 / 55.15])
    assert batch.spans[1, 4].tolist() == pytest.approx([142.36 / 158.18, 1.0])
    assert ((batch.spans >= 0) & (batch.spans <= 1)).all()
    assert batch.durations.tolist() == pytest.approx([55.15, 158.18, paragraphs[2].duration])
    assert batch.video_ids == [p.video_id for p in paragraphs]
    assert batch.paragraph_index.tolist() == [0, 0, 0]
    assert batch.sentence_index[1].tolist() == [0, 1, 2, 3, 4]
    assert batch.words.dtype == batch.word_sentence.dtype == batch.sentence_index.dtype == torch.long
    assert batch.video.dtype == batch.spans.dtype == torch.float32


def test_video_padding_and_single_paragraph_equals_slice(
    paragraphs: list[Paragraph], vocab: Vocabulary, store: DictStore
) -> None:
    # Different clip counts per item exercise the video mask too.
    items = [
        make_item(p, store.get(p.video_id), vocab, n) for p, n in zip(paragraphs, (5, 9, 3), strict=True)
    ]
    batch = collate_paragraphs(items)
    assert batch.video_mask.sum(1).tolist() == [5, 9, 3]
    assert not batch.video[0, 5:].any() and not batch.video[2, 3:].any()
    for b, item in enumerate(items):
        single = collate_paragraphs([item])
        for f in fields(ParagraphBatch):
            got, full = getattr(single, f.name), getattr(batch, f.name)
            if f.name in ("video_ids", "sentence_keys"):
                assert got == [full[b]]
            elif f.name == "video_group":  # numbered within the batch: alone, a row is video 0
                assert got.tolist() == [0] and full[b] == b
            elif f.name in ("durations", "paragraph_index"):
                assert torch.equal(got, full[b : b + 1])
            elif got is None:  # optional labels and token features: absent alone and in the batch
                assert full is None, f.name
            else:
                # Same values in the single batch's extent (every axis); only padding beyond it.
                trimmed = full[(slice(b, b + 1), *(slice(0, n) for n in got.shape[1:]))]
                assert torch.equal(got, trimmed), f.name
                rest = full[b, got.shape[1] :]
                assert (rest == (-1 if f.name in ("word_sentence", "sentence_index") else 0)).all(), f.name


def test_dataloader_and_normalize(paragraphs: list[Paragraph], vocab: Vocabulary, store: DictStore) -> None:
    dataset = ParagraphDataset(paragraphs, store, vocab, num_clips=8, normalize=True)
    loader = DataLoader(dataset, batch_size=2, collate_fn=collate_paragraphs)
    batches = list(loader)
    assert [len(b) for b in batches] == [2, 1]
    norms = torch.linalg.vector_norm(batches[0].video, dim=-1)
    assert torch.allclose(norms, torch.ones_like(norms))


def test_sentence_view(paragraphs: list[Paragraph], vocab: Vocabulary, store: DictStore) -> None:
    view = sentence_view(paragraphs)
    assert len(view) == 3 + 5 + 4 and all(len(p) == 1 for p in view)
    assert [p.sentences[0] for p in view] == [s for p in paragraphs for s in p.sentences]
    batch = collate_paragraphs([ParagraphDataset(view, store, vocab, num_clips=4)[i] for i in range(4)])
    assert batch.sentence_mask.shape == (4, 1) and batch.sentence_mask.all()
    assert batch.sentence_index[:, 0].tolist() == [0, 1, 2, 0]
    assert (batch.word_sentence[batch.word_mask] == 0).all()


def test_bad_records_name_video_and_sentence(
    paragraphs: list[Paragraph], vocab: Vocabulary, store: DictStore
) -> None:
    p = paragraphs[0]
    mute = Paragraph(p.video_id, p.duration, (p.sentences[0], Sentence("...!", 1.0, 2.0, 1, "k")))
    with pytest.raises(DataError, match=r"video v_uqiMw7tQ1Cc: sentence 1 \('\.\.\.!'\) has no word token"):
        ParagraphDataset([mute], store, vocab, num_clips=4)
    with pytest.raises(DataError, match="sentence 1"):
        encode_paragraph(mute, vocab)
    late = Paragraph(p.video_id, p.duration, (Sentence("a man", 50.0, 60.0, 7, "k"),))
    with pytest.raises(DataError, match=r"video v_uqiMw7tQ1Cc: sentence 7 span \(50.0, 60.0\)"):
        make_item(late, store.get(p.video_id), vocab, 4)
    unknown = Paragraph("v_missing", 10.0, (Sentence("a man", 1.0, 2.0, 0, "k"),))
    with pytest.raises(DataError, match="dict-store: no features for 1 video"):
        ParagraphDataset([unknown], store, vocab, num_clips=4)
    with pytest.raises(DataError, match=r"v_uqiMw7tQ1Cc: features of shape \(0, 6\)"):
        make_item(p, np.zeros((0, DIM), np.float32), vocab, 4)
