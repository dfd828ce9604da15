"""GPU checks: run where CUDA is present (``pytest -q tests/test_gpu.py`` on a GPU machine).

Skipped elsewhere.
"""

from __future__ import annotations

import pytest
import torch

from higround.data.batching import ParagraphItem, collate_paragraphs
from higround.losses import HSCNetLoss
from higround.models import HSCNet, HSCNetConfig

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

VOCAB, VIDEO_DIM, WORD_DIM = 50, 16, 8


def _item(lengths: list[int], clips: int, seed: int) -> ParagraphItem:
    g = torch.Generator().manual_seed(seed)
    n = len(lengths)
    start = torch.rand(n, generator=g) * 0.5
    return ParagraphItem(
        video=torch.randn(clips, VIDEO_DIM, generator=g),
        words=torch.randint(2, VOCAB, (sum(lengths),), generator=g),
        sentence_length=torch.tensor(lengths),
        spans=torch.stack([start, start + 0.3], -1),
        duration=60.0,
        video_id=f"v{seed}",
        paragraph_index=0,
        sentence_index=torch.arange(n),
    )


def _model() -> tuple[HSCNet, HSCNetConfig]:
    config = HSCNetConfig(
        video_dim=VIDEO_DIM, word_dim=WORD_DIM, num_clips=24, hidden_dim=32, num_heads=4, feature_layers=1
    )
    torch.manual_seed(0)
    return HSCNet(config, torch.randn(VOCAB, WORD_DIM)).eval(), config


def test_pinned_batch_keeps_values() -> None:
    batch = collate_paragraphs([_item([3, 2], 20, 1), _item([4], 24, 2)])
    pinned = batch.pin_memory()
    assert pinned.video.is_pinned() and pinned.words.is_pinned() and pinned.video_ids == batch.video_ids
    assert torch.equal(pinned.video, batch.video) and torch.equal(pinned.spans, batch.spans)


def test_gpu_matches_cpu_and_padding_is_inert_on_gpu() -> None:
    model, _ = _model()
    target = _item([3, 2], 18, 7)
    padded = collate_paragraphs([_item([5, 7, 4], 24, 8), target])
    with torch.no_grad():
        cpu = model(padded).spans
        gpu_model = model.cuda()
        gpu = gpu_model(padded.to("cuda")).spans.cpu()
        alone = gpu_model(collate_paragraphs([target]).to("cuda")).spans.cpu()
    assert torch.allclose(cpu, gpu, atol=1e-4)
    assert torch.allclose(alone[0], gpu[1, :2], atol=1e-4)


def test_bf16_training_step_is_finite() -> None:
    model, config = _model()
    model = model.cuda().train()
    batch = collate_paragraphs([_item([3, 2], 20, 1), _item([4], 24, 2)]).to("cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = HSCNetLoss(config)(model(batch), batch)["total"]
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
