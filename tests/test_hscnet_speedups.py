"""HSCNet speed switches keep their promises: attention dropout's own rate and the SDPA kernel it
leaves on the CPU, bf16 training through Lightning and bf16 inference within a stated tolerance of
fp32, and the profile script's accounting (every event charged once, FLOPs matching FlopCounterMode)."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from higround.data.batch import ParagraphBatch
from higround.engine.config import load_config
from higround.engine.inference import inference_autocast, predict_loader
from higround.engine.trainer import fit
from higround.errors import ConfigError
from higround.losses import HSCNetLoss
from higround.models import HSCNet, HSCNetConfig
from higround.models.hscnet.family import HSCNET_FAMILY
from higround.models.layers import MultiHeadAttention, sinusoidal_positions
from test_hscnet_model import make_batch, make_model, small_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "hscnet"
# The span heads run in float32 under autocast (decoder.fp32_head): the spans of random tiny models
# moved by at most 8e-5 of the video from float32's (5 seeds; 0.004 with bf16 heads, whose outputs
# step by 2^-8 near 1).
BF16_SPAN_TOLERANCE = 1e-3  # of the video's length: 3.6 s of a one-hour video


def _train_steps(
    config: HSCNetConfig, batch: ParagraphBatch, steps: int = 2, model: HSCNet | None = None
) -> list[float]:
    """The losses of ``steps`` Adam steps of ``model`` (default: a fresh one of ``config``), seed 5."""
    model = (model if model is not None else make_model(config)).train()
    criterion = HSCNetLoss(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    torch.manual_seed(5)
    losses = []
    for _ in range(steps):
        loss = criterion(model(batch), batch)["total"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def test_attention_dropout_unset_is_the_dropout_rate_bit_for_bit() -> None:
    batch = make_batch()
    default = _train_steps(small_config(dropout=0.2), batch)
    assert default == _train_steps(small_config(dropout=0.2, attention_dropout=0.2), batch)
    assert default != _train_steps(small_config(dropout=0.2, attention_dropout=0.0), batch)


def test_attention_dropout_sets_every_attention_and_nothing_else() -> None:
    model = make_model(small_config(dropout=0.3, attention_dropout=0.05))
    attentions = [m for m in model.modules() if isinstance(m, MultiHeadAttention)]
    dropouts = [m for m in model.modules() if isinstance(m, torch.nn.Dropout)]
    # 2 feature encoders, C1 + 3 + 3 at the levels, the grounding attention
    assert len(attentions) == 10 and {m.dropout for m in attentions} == {0.05}
    assert dropouts and {m.p for m in dropouts} == {0.3}
    assert small_config(dropout=0.3).attention_weight_dropout == 0.3
    with pytest.raises(ConfigError, match="attention_dropout"):
        small_config(attention_dropout=1.0)


def test_attention_dropout_never_changes_inference() -> None:
    batch = make_batch()
    with torch.no_grad():
        a = make_model(small_config()).eval()(batch)
        b = make_model(small_config(attention_dropout=0.0)).eval()(batch)
    for name, value in vars(a).items():
        if value is not None:
            assert torch.equal(value, getattr(b, name)), name


def _sdpa_kernels(config: HSCNetConfig) -> set[str]:
    """The SDPA kernels one training step (forward + backward) of ``config`` runs on the CPU."""
    model = make_model(config).train()
    batch = make_batch()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        HSCNetLoss(config)(model(batch), batch)["total"].backward()
    names = {e.key for e in prof.key_averages()}
    return {n for n in names if "scaled_dot_product" in n and n != "aten::scaled_dot_product_attention"}


def test_attention_dropout_zero_keeps_the_fused_cpu_kernel_in_training() -> None:
    """With dropout on the attention weights the CPU runs the reference kernel (which keeps the
    weights for backward: memory quadratic in N^V); without it, the flash kernel, padding masks and
    the cosine variant's ``scale=1`` included."""
    assert _sdpa_kernels(small_config()) == {"aten::_scaled_dot_product_attention_math"}
    assert _sdpa_kernels(small_config(attention_dropout=0.0, sentence_query_own_words=True)) == {
        "aten::_scaled_dot_product_flash_attention_for_cpu",
        "aten::_scaled_dot_product_flash_attention_for_cpu_backward",
    }


# --- bf16 on the CPU ---------------------------------------------------------------------------------


def test_bf16_inference_is_within_tolerance_of_fp32() -> None:
    model = make_model(small_config()).eval()
    batch = make_batch()
    with torch.inference_mode():
        fp32 = model(batch)
        with inference_autocast("cpu", "bf16-mixed"):
            bf16 = model(batch)
    assert bf16.sentence_similarity.dtype == torch.bfloat16  # autocast ran
    assert bf16.spans.dtype == torch.float32  # the heads did not
    mask = batch.sentence_mask
    for name in ("spans", "sentence_spans"):
        gap = (getattr(fp32, name) - getattr(bf16, name))[mask].abs().max()
        assert 0 < gap < BF16_SPAN_TOLERANCE, name


def test_predict_loader_runs_at_the_asked_precision() -> None:
    model = make_model(small_config())
    batch = make_batch()
    ((fp32, _),) = predict_loader(model, HSCNET_FAMILY, [batch], "cpu")
    ((bf16, _),) = predict_loader(model, HSCNET_FAMILY, [batch], "cpu", precision="bf16-mixed")
    gap = (fp32.spans - bf16.spans).abs().max()
    assert 0 < gap < BF16_SPAN_TOLERANCE
    with pytest.raises(ConfigError, match="'fp8'"):
        next(iter(predict_loader(model, HSCNET_FAMILY, [batch], "cpu", precision="fp8")))


def _epoch_losses(run: Path) -> list[float]:
    rows = [
        row for path in sorted(run.glob("csv/version_*/metrics.csv")) for row in csv.DictReader(path.open())
    ]
    return [float(r["train/loss"]) for r in rows if r.get("train/loss")]


def test_bf16_mixed_trains_on_the_cpu_through_lightning(
    tmp_path: Path, shared_data: Path, tacos_features: Path, tiny_model: list[str]
) -> None:
    common = [
        f"data.root={shared_data / 'tacos'}",
        f"data.features={tacos_features}",
        "data.train_split=test",
        "data.val_split=null",
        "data.limit=6",
        "data.batch_size=2",
        "data.num_workers=0",
        *tiny_model,
        "trainer.accelerator=cpu",
        "trainer.progress_bar=false",
        "trainer.max_epochs=2",
        f"output_dir={tmp_path}",
    ]
    runs = {
        p: fit(load_config(CONFIGS / "tacos.yaml", [*common, f"name={p}", f"trainer.precision={p}"]))
        for p in ("32-true", "bf16-mixed")
    }
    fp32, bf16 = (_epoch_losses(runs[p].run_dir) for p in ("32-true", "bf16-mixed"))
    assert len(fp32) == len(bf16) == 2
    assert fp32 != bf16  # bf16 autocast did run
    assert bf16 == pytest.approx(fp32, rel=0.05)
    checkpoint = runs["bf16-mixed"].last_checkpoint
    assert checkpoint is not None
    state = torch.load(checkpoint, weights_only=False)["state_dict"]
    assert all(v.dtype == torch.float32 for v in state.values() if v.is_floating_point())  # fp32 master


# --- benchmarks/hscnet_profile.py --------------------------------------------------------------------


@pytest.fixture(scope="module")
def profiler(load_script: Callable[[str], ModuleType]) -> ModuleType:
    return load_script("hscnet_profile")


TINY = {"hidden_dim": 16, "num_heads": 2, "feature_layers": 1}


def test_profile_charges_every_event_once_and_counts_the_step_flops(profiler: ModuleType) -> None:
    point = profiler.speed.Point("tiny", 12, 1, 8, 2, 2)
    result = profiler.run_profile(point, steps=1, overrides=TINY)
    assert sum(f + b for _, _, f, b in result.modules) == pytest.approx(result.total_ms, rel=1e-9)
    assert result.profiled_flops == result.flops > 0  # matrix products and attention, as FlopCounterMode
    rows = {name: (forward, backward) for name, _, forward, backward in result.modules}
    assert rows["encoder.word_layers.0.attention.q_proj"][1] > 0  # backward found its module
    assert rows.get("(backward, unmatched)", (0.0, 0.0))[1] < 0.01 * result.total_ms
    assert {"optimizer", "loss"} <= set(rows)
    assert "aten::addmm" in {name for name, _, _ in result.ops}
    lines: list[str] = []
    profiler.report(result, top=5, peak=100.0, write=lines.append)
    assert "GFLOP per paragraph" in lines[0] and "| `aten::" in lines[1]


def test_profile_of_inference_runs_no_backward(profiler: ModuleType) -> None:
    point = profiler.speed.Point("tiny", 12, 1, 8, 2, 1)
    result = profiler.run_profile(point, steps=1, inference=True, overrides=TINY)
    assert all(backward == 0 for _, _, _, backward in result.modules)
    assert "optimizer" not in {name for name, _, _, _ in result.modules}
    # FlopCounterMode sees the decoder LSTMs' products in eval mode, the profiler's oneDNN LSTM not.
    assert 0 < result.profiled_flops <= result.flops


def test_model_builds_from_its_recipe_with_a_speed_override() -> None:
    config = load_config(CONFIGS / "activitynet_captions.yaml", ["model.attention_dropout=0"]).model_config(
        word_dim=300
    )
    assert config.attention_dropout == 0.0 and config.dropout == 0.1
    HSCNet(config, torch.zeros(4, 300))


# --- fewer small ops ---------------------------------------------------------------------------------


def test_position_table_is_reused_only_at_its_exact_length() -> None:
    """The cached table equals a fresh one bit for bit whatever the order of lengths, is rebuilt for a
    new length, and is a normal tensor even when first built under inference_mode."""
    encoder = make_model(small_config()).video_encoder
    device = torch.device("cpu")
    with torch.inference_mode():
        first = encoder.positions(16, 32, device)
    assert not first.is_inference() and encoder.positions(16, 32, device) is first
    for length in (40, 7, 16, 40):
        assert torch.equal(encoder.positions(length, 32, device), sinusoidal_positions(length, 32))


def test_a_model_first_run_for_inference_still_trains_identically() -> None:
    config = small_config()
    batch = make_batch()
    fresh = _train_steps(config, batch)
    model = make_model(config)
    with torch.inference_mode():
        model.eval()(batch)  # caches the position tables under inference_mode
    assert _train_steps(config, batch, model=model) == fresh
