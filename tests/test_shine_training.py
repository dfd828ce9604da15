"""SHINE trained on Moment-DETR and QD-DETR (docs/shine.md, "Training with a base model"): the five
passes (positive, easy negative, three hard negatives: the negatives in ONE encoder pass) forward and
backward with every term finite and gradients reaching the words only the hard negatives hold; eval
predictions bit-identical with SHINE on or off; padding (clips, negative words) never changes a
SHINE term; the dataset attaches each query's negative ids, the datamodule only to training batches;
every SHINE recipe loads and builds; `higround train / evaluate / predict` with and without SHINE on
a small procedural set."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from higround.cli.main import main
from higround.data.batch import ParagraphBatch
from higround.data.batching import ParagraphItem, collate_paragraphs
from higround.data.dataset import ParagraphDataset, make_item, sentence_view
from higround.data.features import open_store, write_hdf5_store
from higround.data.negatives import negative_word_ids
from higround.data.readers import load_dataset
from higround.data.schema import GroundingDataset, Paragraph
from higround.data.synthetic import SyntheticConfig, generate_dataset
from higround.engine.config import load_config
from higround.engine.datamodule import GroundingDataModule
from higround.errors import ConfigError, DataError, FixableDataError
from higround.losses.detr import DETRLoss, QDDETRLoss, ground_truth_clips
from higround.losses.shine import easy_negative_index, fine_distances, negative_pair_loss, shine_losses
from higround.metrics import read_predictions
from higround.models.detr import DETRModel, detr_predictions
from higround.models.moment_detr import MomentDETR, MomentDETRConfig
from higround.models.qd_detr import QDDETR, QDDETRConfig
from higround.text.vocab import Vocabulary

REPO = Path(__file__).resolve().parents[1]
MODELS: dict[str, tuple[Any, Any, Any]] = {
    "moment_detr": (MomentDETR, MomentDETRConfig, DETRLoss),
    "qd_detr": (QDDETR, QDDETRConfig, QDDETRLoss),
}
DIM = 12  # clip features
CLIPS = {"v1": 20, "v2": 9, "v3": 14}  # clips per video: the batch pads
# A tiny Charades-CG train split: 3 videos, 5 queries (v1 has two: the roll may pick the same video).
ANNOTATIONS = {
    "v1": {
        "duration": 30.0,
        "timestamps": [[1.0, 9.0], [12.0, 20.0]],
        "sentences": ["person opens the door.", "person sits on a chair."],
    },
    "v2": {"duration": 18.0, "timestamps": [[4.0, 12.0]], "sentences": ["a man takes a cup."]},
    "v3": {
        "duration": 25.0,
        "timestamps": [[0.0, 6.0], [10.0, 25.0]],
        "sentences": ["she drinks water.", "she puts the cup down."],
    },
}
# Hard negatives, least edited first, of different lengths (the batch pads them too); the words of
# HARD_ONLY appear in no positive query, so only the hard-negative passes can move their vectors.
HARD_ONLY = ("zebra", "violin", "kayak")
RECOMPOSED = {
    "v1#0": ["person closes the door.", "person zebra the window.", "a dog violin the big kayak now."],
    "v1#1": ["person stands on a chair.", "person zebra on a violin.", "he kayak under the table."],
    "v2#0": ["a man drops a cup.", "a man zebra a violin.", "she kayak a zebra."],
    "v3#0": ["she spills water.", "she zebra violin.", "he kayak sand slowly."],
    "v3#1": ["she takes the cup down.", "she zebra the violin down.", "he kayak a zebra up quickly."],
}


def _rows() -> list[dict[str, Any]]:
    """The negatives file of :data:`ANNOTATIONS`, in the released format (templates by hand)."""
    rows = []
    for video, record in ANNOTATIONS.items():
        for index, (query, window) in enumerate(zip(record["sentences"], record["timestamps"], strict=True)):
            recomposed = RECOMPOSED[f"{video}#{index}"]
            rows.append(
                {
                    "qid": f"{video}_train_{index}",
                    "query": query,
                    "duration": record["duration"],
                    "vid": video,
                    "relevant_windows": [window],
                    "masked_queries": [f"{query[:-1]} <mask>{'.' * level}" for level in (1, 2, 3)],
                    "recomposed_queries": recomposed,
                }
            )
    return rows


def _write_cg(root: Path, rows: list[dict[str, Any]] | None = None) -> Path:
    """The split, its clip features (HDF5, ``{video_id}``) and its negatives file under ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "train.json").write_text(json.dumps(ANNOTATIONS))
    rng = np.random.default_rng(0)
    write_hdf5_store(root / "features.h5", {v: rng.standard_normal((n, DIM)) for v, n in CLIPS.items()})
    path = root / "negatives.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in (_rows() if rows is None else rows)))
    return path


@pytest.fixture(scope="module")
def cg(tmp_path_factory: pytest.TempPathFactory) -> tuple[GroundingDataset, Path]:
    root = tmp_path_factory.mktemp("charades_cg")
    path = _write_cg(root)
    return load_dataset("charades_cg", root, "train"), path


def _vocab(dataset: GroundingDataset, with_negatives: bool = True) -> Vocabulary:
    texts = [s.text for _, s in dataset.sentences()]
    return Vocabulary.build(
        texts + [q for qs in RECOMPOSED.values() for q in qs] if with_negatives else texts
    )


def _items(cg: tuple[GroundingDataset, Path], vocab: Vocabulary) -> list[ParagraphItem]:
    dataset, path = cg
    table = negative_word_ids(path, dataset, vocab)
    store = open_store(path.parent / "features.h5", "{video_id}")
    return [
        make_item(p, store.get(p.video_id), vocab, 32, native_clips=True, negatives=table)
        for p in sentence_view(dataset.paragraphs())
    ]


def _config(family: str, **changes: Any) -> Any:
    values = {
        "video_dim": DIM,
        "word_dim": 10,
        "num_clips": 32,
        "hidden_dim": 16,
        "num_heads": 2,
        "ffn_dim": 32,
    }
    return MODELS[family][1].from_dict({**values, **changes})


def _model(family: str, config: Any, vocab: Vocabulary) -> DETRModel:
    torch.manual_seed(0)
    model: DETRModel = MODELS[family][0](config, torch.randn(len(vocab), config.word_dim))
    return model


DETERMINISTIC = {"dropout": 0.0, "input_dropout": 0.0}


# --- the five passes -----------------------------------------------------------------------------------


@pytest.mark.parametrize("family", MODELS)
def test_five_passes_forward_and_backward(family: str, cg: tuple[GroundingDataset, Path]) -> None:
    vocab = _vocab(cg[0])
    config = _config(family, shine={}, fine_tune_word_vectors=True, **DETERMINISTIC)
    model = _model(family, config, vocab).train()
    batch = collate_paragraphs(_items(cg, vocab))
    size, clips = batch.video_mask.shape
    sizes: list[int] = []
    encode = model.encode_pair

    def counted(*args: torch.Tensor) -> Any:
        sizes.append(args[0].shape[0])
        return encode(*args)

    model.encode_pair = counted  # type: ignore[method-assign]
    output = model(batch)
    # Two encoder calls: the positive pass (with the decoder), then easy + 3 hard negatives batched.
    assert sizes == [size, size * 4]
    assert output.negative_saliency is not None and output.hard_saliency is not None
    assert output.negative_saliency.shape == (size, clips) and output.hard_saliency.shape == (size, 3, clips)
    # Each negative's scores are those of its own pass, the query alone on the same video.
    model.encode_pair = encode  # type: ignore[method-assign]
    video, video_mask = model.video_inputs(batch)
    text, text_mask = model.text_inputs(batch)
    assert batch.negative_words is not None and batch.negative_mask is not None
    with torch.no_grad():
        for level in range(3):
            words, mask = batch.negative_words[:, 0, level], batch.negative_mask[:, 0, level]
            alone = model.pair_saliency(video, video_mask, *model.embed_words(words, mask))
            torch.testing.assert_close(
                output.hard_saliency[:, level] * video_mask, alone * video_mask, atol=1e-5, rtol=1e-5
            )
        rows = easy_negative_index(batch.same_video())
        easy = model.pair_saliency(video, video_mask, text[rows], text_mask[rows])
        torch.testing.assert_close(
            output.negative_saliency * video_mask, easy * video_mask, atol=1e-5, rtol=1e-5
        )

    terms = MODELS[family][2](config)(output, batch)
    expected = {"span_l1", "span_giou", "class", "saliency_negative", "shine_coarse", "shine_fine", "total"}
    # The base hinge is replaced by L_intra (keep_base_saliency_hinge false); QD-DETR keeps L_cont.
    assert set(terms) == expected | ({"saliency_contrast"} if family == "qd_detr" else set())
    assert all(math.isfinite(float(v.detach())) for v in terms.values())
    gt = ground_truth_clips(batch.spans[:, 0], video_mask)
    shine = shine_losses(
        output.saliency, output.negative_saliency, output.hard_saliency, gt, video_mask, model.shine
    )  # type: ignore[arg-type]
    for name, value in shine.items():
        torch.testing.assert_close(terms[name], value)
    neg = negative_pair_loss(output.negative_saliency, video_mask)
    torch.testing.assert_close(terms["saliency_negative"], neg)
    weighted = sum(config.weight(k) * v for k, v in terms.items() if k != "total")
    torch.testing.assert_close(terms["total"], weighted)

    terms["total"].backward()
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            assert parameter.grad is None or bool(torch.isfinite(parameter.grad).all()), name


@pytest.mark.parametrize("family", MODELS)
def test_gradients_reach_the_words_only_the_hard_negatives_hold(
    family: str, cg: tuple[GroundingDataset, Path]
) -> None:
    """The absolute chain (S-Eq. 1) pushes every hard negative; the relative one (the default)
    telescopes while all its links are active, ``sum_j (m_j + D_j - D_{j+1}) = sum m + D_0 - D_{H+1}``:
    the hard negatives then get no gradient at all (docs/shine.md), which this also checks."""
    vocab = _vocab(cg[0])
    batch = collate_paragraphs(_items(cg, vocab))
    only_hard = [vocab.id_of(w) for w in HARD_ONLY]
    for ranking in ("absolute", "relative"):
        config = _config(family, shine={"ranking": ranking}, fine_tune_word_vectors=True, **DETERMINISTIC)
        model = _model(family, config, vocab).train()
        output = model(batch)
        assert output.negative_saliency is not None and output.hard_saliency is not None
        gt = ground_truth_clips(batch.spans[:, 0], batch.video_mask)
        chain = fine_distances(
            output.saliency, output.hard_saliency, output.negative_saliency, gt, batch.video_mask
        )
        MODELS[family][2](config)(output, batch)["shine_fine"].backward()
        grad = model.embedding.weight.grad
        assert grad is not None
        reached = [bool(grad[i].abs().sum() > 0) for i in only_hard]
        if ranking == "absolute":
            assert all(reached)  # through the hard-negative passes alone: no other query has them
        else:
            assert bool((0.25 + chain[:, :-1] - chain[:, 1:] > 0).all())  # every link active at init
            assert not any(reached)


@pytest.mark.parametrize("family", MODELS)
def test_the_hinge_is_kept_when_asked_and_weights_apply(
    family: str, cg: tuple[GroundingDataset, Path]
) -> None:
    vocab = _vocab(cg[0])
    batch = collate_paragraphs(_items(cg, vocab))
    weights = {"shine_fine": 3.0, "shine_coarse": 0.5}
    config = _config(family, shine={"keep_base_saliency_hinge": True}, loss_weights=weights, **DETERMINISTIC)
    model = _model(family, config, vocab).train()
    torch.manual_seed(1)
    terms = MODELS[family][2](config)(model(batch), batch)
    assert "saliency" in terms and {"shine_coarse", "shine_fine"} <= set(terms)
    weighted = sum(config.weight(k) * v for k, v in terms.items() if k != "total")
    torch.testing.assert_close(terms["total"], weighted)
    assert config.weight("shine_fine") == 3.0 and config.weight("saliency_negative") == 1.0


@pytest.mark.parametrize("family", MODELS)
def test_eval_predictions_are_bit_identical_with_and_without_shine(
    family: str, cg: tuple[GroundingDataset, Path]
) -> None:
    vocab = _vocab(cg[0])
    batch = collate_paragraphs(_items(cg, vocab))
    plain = _model(family, _config(family), vocab).eval()
    shine = _model(family, _config(family, shine={"ranking": "absolute"}), vocab).eval()
    # SHINE adds no parameter: the same seed builds the same weights.
    assert plain.state_dict().keys() == shine.state_dict().keys()
    assert all(torch.equal(v, shine.state_dict()[k]) for k, v in plain.state_dict().items())
    bare = dataclasses.replace(batch, negative_words=None, negative_mask=None)
    with torch.no_grad():
        out, again = plain(bare), shine(batch)
        assert again.negative_saliency is None and again.hard_saliency is None  # eval never runs them
        one, two = detr_predictions(out, bare), detr_predictions(again, batch)
    assert torch.equal(one.spans, two.spans) and one.scores is not None and two.scores is not None
    assert torch.equal(one.scores, two.scores)
    assert one.saliency is not None and two.saliency is not None and torch.equal(one.saliency, two.saliency)


def _padded(batch: ParagraphBatch, clips: int = 3, words: int = 2) -> ParagraphBatch:
    """``batch`` with ``clips`` more padded clips and ``words`` more padded negative words, every
    padded entry holding garbage."""
    assert batch.negative_words is not None and batch.negative_mask is not None
    size, _, count, _ = batch.negative_words.shape
    video = torch.cat([batch.video, torch.full((size, clips, batch.video.shape[-1]), 50.0)], dim=1)
    video_mask = torch.cat([batch.video_mask, torch.zeros(size, clips, dtype=torch.bool)], dim=1)
    negative_mask = torch.cat([batch.negative_mask, torch.zeros(size, 1, count, words, dtype=torch.bool)], -1)
    negative_words = torch.cat(
        [batch.negative_words, torch.zeros(size, 1, count, words, dtype=torch.long)], -1
    )
    negative_words = torch.where(negative_mask, negative_words, 7)  # a real word's id in every pad
    return dataclasses.replace(
        batch,
        video=video.masked_fill(~video_mask[..., None], 50.0),
        video_mask=video_mask,
        negative_words=negative_words,
        negative_mask=negative_mask,
    )


@pytest.mark.parametrize("family", MODELS)
def test_padding_never_changes_a_shine_term(family: str, cg: tuple[GroundingDataset, Path]) -> None:
    vocab = _vocab(cg[0])
    batch = collate_paragraphs(_items(cg, vocab))
    config = _config(family, shine={}, **DETERMINISTIC)
    model, criterion = _model(family, config, vocab).train(), MODELS[family][2](config)
    terms = criterion(model(batch), batch)
    padded = _padded(batch)
    output = model(padded)
    again = criterion(output, padded)
    for name in ("shine_coarse", "shine_fine", "saliency_negative", "total"):
        torch.testing.assert_close(again[name], terms[name], atol=1e-5, rtol=1e-5)
    # A row alone: its hard negatives (padded to its own length) score as in the batch.
    assert output.hard_saliency is not None
    for b in range(len(batch)):
        alone = collate_paragraphs([_items(cg, vocab)[b]])
        single = model(alone).hard_saliency
        assert single is not None
        clips = alone.video.shape[1]
        torch.testing.assert_close(single[0], output.hard_saliency[b, :, :clips], atol=1e-5, rtol=1e-5)


def test_shine_refuses_what_it_cannot_train_on(cg: tuple[GroundingDataset, Path]) -> None:
    vocab = _vocab(cg[0])
    batch = collate_paragraphs(_items(cg, vocab))
    model = _model("moment_detr", _config("moment_detr", shine={}), vocab).train()
    with pytest.raises(ConfigError, match=r"set data\.negatives"):
        model(dataclasses.replace(batch, negative_words=None, negative_mask=None))
    four = _model(
        "qd_detr", _config("qd_detr", shine={"hard_negatives": 4, "fine_margins": [0.25] * 5}), vocab
    )
    with pytest.raises(ConfigError, match=r"hard_negatives=4, but data\.negatives gives 3"):
        four.train()(batch)
    with pytest.raises(ConfigError, match="text_dim"):
        _config("moment_detr", shine={}, text_dim=8)
    with pytest.raises(ConfigError, match="negative_other_video=True"):
        _config("qd_detr", shine={"easy_negative": "other_video"})
    assert _config(
        "qd_detr", shine={"easy_negative": "other_video"}, negative_other_video=True
    ).easy_negative == ("other_video")
    assert _config("moment_detr", shine={"easy_negative": "other_video"}).easy_negative == "other_video"
    with pytest.raises(ConfigError, match="unknown loss_weights"):
        _config("moment_detr", loss_weights={"saliency_contrast": 1.0})


# --- the data -------------------------------------------------------------------------------------------


def test_the_dataset_attaches_each_querys_negative_ids(cg: tuple[GroundingDataset, Path]) -> None:
    dataset, path = cg
    vocab = _vocab(dataset, with_negatives=False)  # the model's: the training queries' words
    rows = {f"{r['vid']}#{r['qid'].rsplit('_', 1)[1]}": r for r in _rows()}
    store = open_store(path.parent / "features.h5", "{video_id}")
    samples = sentence_view(dataset.paragraphs())
    for kind, field in (("recomposed", "recomposed_queries"), ("masked", "masked_queries")):
        table = negative_word_ids(path, dataset, vocab, kind)  # type: ignore[arg-type]
        data = ParagraphDataset(samples, store, vocab, 32, native_clips=True, negatives=table)
        batch = collate_paragraphs([data[i] for i in range(len(data))])
        assert batch.negative_words is not None and batch.negative_mask is not None
        assert batch.negative_words.shape[:3] == (5, 1, 3)
        for b, (key,) in enumerate(batch.sentence_keys):
            for level in range(3):
                ids = batch.negative_words[b, 0, level]
                real = batch.negative_mask[b, 0, level]
                assert ids[real].tolist() == vocab.encode_text(rows[key][field][level]), (kind, key, level)
                assert bool(real[: int(real.sum())].all()) and bool((ids[~real] == 0).all())  # a prefix
        if kind == "recomposed":  # unknown words are <unk>, as in any query
            assert (
                vocab.id_of("zebra") == vocab.unk_id
                and vocab.unk_id in batch.negative_words.tolist()[1][0][1]
            )
    plain = ParagraphDataset(samples, store, vocab, 32, native_clips=True)
    assert collate_paragraphs([plain[0], plain[1]]).negative_words is None


def test_negative_problems_are_clear_errors(tmp_path: Path, cg: tuple[GroundingDataset, Path]) -> None:
    dataset, _ = cg
    vocab = _vocab(dataset)
    with pytest.raises(FileNotFoundError, match=r"missing\.jsonl"):
        negative_word_ids(tmp_path / "missing.jsonl", dataset, vocab)
    rows = _rows()
    rows[2] = {**rows[2], "qid": "v2_train_7"}
    bad = _write_cg(tmp_path / "bad", rows)
    with pytest.raises(
        FixableDataError, match=r"negatives.jsonl: line 3: qid 'v2_train_7' names no sentence"
    ):
        negative_word_ids(bad, load_dataset("charades_cg", tmp_path / "bad", "train"), vocab)
    rows = _rows()
    rows[0]["recomposed_queries"] = ["...", "b", "c"]
    empty = _write_cg(tmp_path / "empty", rows)
    with pytest.raises(
        DataError, match=r"qid 'v1_train_0': recomposed negative 1 \('...'\) has no word token"
    ):
        negative_word_ids(empty, load_dataset("charades_cg", tmp_path / "empty", "train"), vocab)
    paragraph = Paragraph("v9", 10.0, (dataclasses.replace(next(dataset.sentences())[1], key="v9#0"),))
    with pytest.raises(DataError, match="'v9#0' has no hard negatives"):
        make_item(paragraph, np.zeros((4, DIM)), vocab, 8, negatives={})


def _cg_config(root: Path, negatives: Path | None, *extra: str) -> Any:
    overrides = [
        f"data.root={root}",
        f"data.features={root / 'features.h5'}",
        "data.feature_key={video_id}",
        f"data.negatives={negatives if negatives is not None else 'null'}",
        f"model.video_dim={DIM}",
        "model.num_clips=32",
        "data.val_split=train",
        "data.test_split=train",
        "data.num_workers=0",
        *extra,
    ]
    return load_config(REPO / "configs" / "qd_detr" / "charades_cg_shine.yaml", overrides)


def test_only_training_batches_carry_the_negatives(tmp_path: Path) -> None:
    path = _write_cg(tmp_path)
    data = GroundingDataModule(_cg_config(tmp_path, path, "data.limit=2", "data.batch_size=8"))
    data.setup("fit")
    [train] = list(data.train_dataloader())
    assert train.negative_words is not None and train.negative_words.shape[:3] == (3, 1, 3)  # 2 videos
    table = negative_word_ids(path, load_dataset("charades_cg", tmp_path, "train"), data.vocab)
    for b, (key,) in enumerate(train.sentence_keys):
        assert train.negative_mask is not None
        assert train.negative_words[b, 0, 2][train.negative_mask[b, 0, 2]].tolist() == table[key][2]
    assert all(b.negative_words is None for b in data.val_dataloader())  # val = train split, no negatives
    assert all(b.negative_words is None for b in data.test_dataloader())
    assert all(
        b.negative_words is None
        for b in GroundingDataModule(_cg_config(tmp_path, None)).loader("train", train=True)
    )


def test_the_train_command_names_a_missing_or_unjoinable_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _write_cg(tmp_path)
    recipe = REPO / "configs" / "moment_detr" / "charades_cg_shine.yaml"
    base = [
        "train",
        "--config",
        str(recipe),
        f"data.root={tmp_path}",
        f"data.features={tmp_path / 'features.h5'}",
        "data.feature_key={video_id}",
        f"model.video_dim={DIM}",
        "model.num_clips=32",
        "data.num_workers=0",
        "trainer.progress_bar=false",
        f"output_dir={tmp_path / 'runs'}",
    ]
    assert main([*base, f"data.negatives={tmp_path / 'nowhere.jsonl'}"]) == 2
    assert "negatives file not found" in capsys.readouterr().err
    rows = _rows()
    rows[1] = {**rows[1], "qid": "v1_train_9"}
    (tmp_path / "other.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main([*base, f"data.negatives={tmp_path / 'other.jsonl'}"]) == 2
    err = capsys.readouterr().err
    assert "other.jsonl: line 2: qid 'v1_train_9' names no sentence" in err
    assert main([*base, "data.negatives=null"]) == 2  # SHINE without negatives
    assert "set data.negatives" in capsys.readouterr().err


# --- recipes and commands ---------------------------------------------------------------------------------


SHINE_RECIPES = sorted(REPO.glob("configs/*/*_shine.yaml"))


def test_every_base_recipe_of_the_benchmarks_has_its_shine_recipe() -> None:
    names = {f"{p.parent.name}/{p.stem}" for p in SHINE_RECIPES}
    datasets = ("charades_cg", "activitynet_cg", "charades_sta", "synthetic")
    assert names == {f"{f}/{d}_shine" for f in MODELS for d in datasets}


@pytest.mark.parametrize("recipe", SHINE_RECIPES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_shine_recipe_loads_and_builds_its_model(recipe: Path) -> None:
    config = load_config(recipe)
    base = load_config(recipe.with_name(recipe.name.replace("_shine", "")))
    model_config = config.model_config(video_dim=int(config.model["video_dim"] or DIM), word_dim=8)
    shine = model_config.shine_config
    assert shine is not None and base.model.get("shine") is None
    model = config.family.build_model(model_config, torch.zeros(4, 8))
    assert isinstance(model, DETRModel) and model.shine == shine
    config.family.build_loss(model_config)
    assert config.data.negatives is not None and config.data.negatives.endswith(".jsonl")
    assert shine.keep_base_saliency_hinge == ("activitynet_cg" in recipe.stem)  # the released command
    # Everything else is the base recipe's.
    mine, theirs = config.to_dict(), base.to_dict()
    assert theirs["data"]["negatives"] is None
    assert {k: v for k, v in mine["data"].items() if k != "negatives"} == {
        k: v for k, v in theirs["data"].items() if k != "negatives"
    }
    assert {k: v for k, v in mine["model"].items() if k not in ("shine", "loss_weights")} == {
        k: v for k, v in theirs["model"].items() if k not in ("shine", "loss_weights")
    }
    weights = {"saliency_negative": 1.0, "shine_coarse": 1.0, "shine_fine": 1.0}  # lambda_neg, cr, fr
    assert mine["model"]["loss_weights"] == {**theirs["model"]["loss_weights"], **weights}
    for section in ("optim", "trainer", "eval", "text"):
        assert mine[section] == theirs[section]


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small procedural set with its grammar's negatives (`higround data negatives --grammar`)."""
    root = tmp_path_factory.mktemp("synthetic")
    config = SyntheticConfig(
        seed=0, train_videos=8, val_videos=3, test_videos=3, num_clips=16, feature_dim=12
    )
    paths = generate_dataset(root, config)
    argv = ["data", "negatives", "activitynet_captions", "--root", str(root)]
    assert main([*argv, "--out", str(root / "negatives.jsonl"), "--grammar", str(paths.manifest)]) == 0
    return root


@pytest.mark.parametrize("family", MODELS)
@pytest.mark.parametrize("with_shine", [True, False], ids=["shine", "base"])
def test_train_evaluate_and_predict_with_and_without_shine(
    family: str, with_shine: bool, synthetic: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recipe = REPO / "configs" / family / ("synthetic_shine.yaml" if with_shine else "synthetic.yaml")
    overrides = [
        f"data.root={synthetic}",
        f"data.features={synthetic / 'features.h5'}",
        "model.num_clips=16",
        "model.hidden_dim=16",
        "model.num_heads=2",
        "model.ffn_dim=32",
        "data.batch_size=8",
        "trainer.max_epochs=1",
        "trainer.progress_bar=false",
        "trainer.log_every_n_steps=1",
        f"output_dir={tmp_path}",
    ]
    if with_shine:
        overrides.append(f"data.negatives={synthetic / 'negatives.jsonl'}")
    assert main(["train", "--config", str(recipe), *overrides]) == 0
    run = tmp_path / f"{family}_synthetic{'_shine' if with_shine else ''}"
    metrics = (run / "csv" / "version_0" / "metrics.csv").read_text().splitlines()[0].split(",")
    shine_terms = {"train/shine_coarse", "train/shine_fine"}
    assert shine_terms <= set(metrics) if with_shine else not shine_terms & set(metrics)
    assert ("train/saliency" in metrics) != with_shine  # the hinge is replaced by L_intra
    capsys.readouterr()
    out = tmp_path / "metrics.json"
    best = str(run / "checkpoints" / "best.ckpt")
    assert (
        main(["evaluate", "--checkpoint", best, "--split", "test", "--device", "cpu", "--json", str(out)])
        == 0
    )
    assert 0.0 <= json.loads(out.read_text())["metrics"]["mIoU"] <= 1.0
    predictions = tmp_path / "predictions.json"
    argv = ["predict", "--checkpoint", str(run / "model.safetensors"), "--split", "test"]
    assert main([*argv, "--out", str(predictions), "--device", "cpu"]) == 0
    written = read_predictions(predictions)
    test = load_dataset("activitynet_captions", synthetic, "test")
    assert len(written) == test.sentence_count() and all(len(r.spans) == 10 for r in written.records)
