"""benchmarks/ablation.py: every variant is a valid recipe switching the intended parts, and the
tables aggregate runs as documented (the runs themselves are the benchmark, not a test)."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

import pytest

from higround.demo import DEFAULT_CONFIG
from higround.engine.config import load_config


@pytest.fixture(scope="module")
def ablation(load_script: Callable[[str], ModuleType]) -> ModuleType:
    return load_script("ablation")


def test_variants_are_valid_and_switch_what_they_say(ablation: ModuleType) -> None:
    configs = {}
    for variant in ablation.VARIANTS:
        config = load_config(DEFAULT_CONFIG, [*ablation.RECIPE, *variant.overrides])
        configs[variant.name] = config.model_config(video_dim=64, word_dim=50)
    full = configs[ablation.FULL]
    assert full.word_level and full.paragraph_level and full.uses_word_decoder and full.uses_paragraph_decoder
    assert not configs["SL"].word_level and not configs["SL"].paragraph_level
    assert configs["SL+PL"].paragraph_level and not configs["SL+PL"].word_level
    aligned = {
        name: (c.uses_word_alignment, c.align_sentence, c.uses_paragraph_alignment)
        for name, c in configs.items()
    }
    assert aligned["no alignment loss"] == (False, False, False)
    assert aligned["L_enc^W only"] == (True, False, False)
    assert aligned["L_enc^S only"] == (False, True, False)
    assert aligned["L_enc^P only"] == (False, False, True)
    sd = configs["SD"]
    assert sd.word_level and sd.paragraph_level and not sd.uses_word_decoder and not sd.uses_paragraph_decoder
    assert configs["SD+WD"].uses_word_decoder and not configs["SD+WD"].uses_paragraph_decoder
    # Each table has its paper's rows: 4 levels, none + each alone + all, 4 decoders.
    per_table = {t: [v.name for v in ablation.VARIANTS if t in v.tables] for t in ("2", "3", "4", "5")}
    assert [len(per_table[t]) for t in ("2", "3", "4", "5")] == [4, 5, 4, 4]
    # The speed settings change precision and attention dropout only.
    speed = {v.name: load_config(DEFAULT_CONFIG, [*ablation.RECIPE, *v.overrides]) for v in ablation.VARIANTS}
    both = speed["bf16-mixed, attention dropout 0"]
    assert both.trainer.precision == "bf16-mixed" and both.model_config(64, 50).attention_dropout == 0
    assert speed[ablation.FULL].model_config(64, 50).attention_dropout is None
    assert speed["attention dropout 0"].trainer.precision == speed[ablation.FULL].trainer.precision


def test_markdown_mean_and_sample_std(ablation: ModuleType) -> None:
    def run(variant: str, seed: int, miou: float) -> dict[str, object]:
        return {"variant": variant, "seed": seed, "metrics": dict.fromkeys(ablation.COLUMNS, miou)}

    runs = [run("SL", 0, 0.2), run("SL", 1, 0.4), run(ablation.FULL, 0, 0.5)]
    text = ablation.markdown(runs, dict.fromkeys(ablation.COLUMNS, 0.1), "header")
    table2 = text.split("### Table 3")[0]
    assert "| SL | 2 | 30.00 ± 14.14 |" in table2  # mean 0.3, sample std 0.1414
    assert "| SL+PL+WL | 1 | 50.00 ± n/a |" in table2
    assert "SL+PL |" not in table2  # rows without runs are left out
    assert table2.index("| SL |") < table2.index("| SL+PL+WL |") < table2.index("| prior (i, n)")
    assert "| all three | 1 |" in text and "| SD+PD+WD | 1 |" in text
