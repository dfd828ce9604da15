"""HSE's hierarchical wiring and FSE (spec §2; supplement §1), over a :class:`RetrievalBatch`.

HSE (``hierarchical=True``), CMHSE ``VSE.forward_emb`` / ``structure_emb``:

* low level: every clip's frames -> ``f_c`` -> a clip embedding ``c_k``; every sentence's words ->
  ``f_s`` -> a sentence embedding ``s_k`` (the same GRU-max encoders, :mod:`.encoders`);
* contexts: the same ``f_c`` over the whole video's frames gives ``v_ctx``, ``f_s`` over the whole
  paragraph's words gives ``p_ctx`` (supp. §1: "feed the entire video/paragraph in its
  frame-wise/word-wise representations through the low-level encoder");
* high level: ``F_v`` over the clip embeddings in annotation order, started from ``v_ctx``
  ("input the subsequent low-level embedding to the high-level encoder as its initial hidden
  state"), gives the video embedding ``v``; ``F_p`` over the sentence embeddings from ``p_ctx`` gives
  the paragraph embedding ``p``;
* in training, the decoders of the reconstruction losses (:mod:`.decoders`): ``v`` -> the clips,
  those -> their frames; ``p`` -> the sentences, those -> their word vectors.

FSE (``hierarchical=False``): the embeddings are ``v_ctx`` and ``p_ctx`` alone, one encoder over all
frames and one over all words.

A batch may carry one side only (a video-only batch has no words, a text-only one no frames): the
other side's fields of :class:`HSEOutput` are then ``None`` (retrieval embeds each side alone).
Every level runs on the whole batch at once: sentences and clips are gathered into packed
``(M, L, F)`` tensors by masks, never by a loop.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from higround.data.batch import ParagraphBatch
from higround.data.retrieval import RetrievalBatch
from higround.errors import DataError
from higround.models.hse.config import HSEConfig
from higround.models.hse.decoders import RepeatDecoder
from higround.models.hse.encoders import GRUMaxEncoder, step_mask


@dataclass
class HSEOutput:
    """Unnormalised embeddings (``H = embed_dim``) of a batch and, in training, the reconstructions.

    Attributes:
        videos, paragraphs: ``(B, H)`` ``v`` and ``p`` (FSE: the contexts), or None (side absent).
        video_context, paragraph_context: ``(B, H)`` ``v_ctx`` and ``p_ctx``, or None.
        clips: ``(M, H)`` clip embeddings, row-major over ``batch.clip_mask`` (None: FSE, no video).
        sentences: ``(M', H)`` sentence embeddings, row-major over ``batch.sentence_mask``.
        clip_recon, sentence_recon: ``(M, H)`` / ``(M', H)`` decoded from ``v`` / ``p`` (H-6).
        frame_recon, frame_target: ``(sum of clip lengths, D_v)`` decoded frames and the real ones (H-7).
        word_recon, word_target: ``(W, word_dim)`` decoded word vectors and the embedding's (H-7).
    """

    videos: Tensor | None
    paragraphs: Tensor | None
    video_context: Tensor | None = None
    paragraph_context: Tensor | None = None
    clips: Tensor | None = None
    sentences: Tensor | None = None
    clip_recon: Tensor | None = None
    sentence_recon: Tensor | None = None
    frame_recon: Tensor | None = None
    frame_target: Tensor | None = None
    word_recon: Tensor | None = None
    word_target: Tensor | None = None


def _side_present(mask: Tensor, what: str) -> bool:
    """Whether every row of a batch has ``what`` (``mask`` ``(B, N)``); none is fine, some is not."""
    rows = mask.any(dim=1)
    if bool(rows.all()) and mask.shape[0] > 0:
        return True
    if not bool(rows.any()):
        return False
    raise DataError(f"hse: a batch mixes rows with and without {what}; embed each side in its own batch")


def _scatter(values: Tensor, mask: Tensor) -> Tensor:
    """``(B, N, H)`` zeros holding the row-major ``values`` ``(M, H)`` where ``mask`` ``(B, N)`` is True."""
    out = values.new_zeros((*mask.shape, values.shape[-1]))
    out[mask] = values
    return out


class HSE(nn.Module):
    """The HSE / FSE embedding model of :class:`HSEConfig` (module docstring)."""

    def __init__(self, config: HSEConfig, word_vectors: Tensor) -> None:
        """Build every encoder (and the decoders the reconstruction terms need).

        Args:
            config: the hyper-parameters.
            word_vectors: ``(V, word_dim)`` initial word embedding (GloVe 840B 300-d in the paper),
                fine-tuned unless ``config.fine_tune_word_vectors`` is false.

        Raises:
            ValueError: ``word_vectors`` is not ``(V, config.word_dim)``.
        """
        super().__init__()
        if word_vectors.ndim != 2 or word_vectors.shape[1] != config.word_dim:
            raise ValueError(
                f"hse: word vectors of shape {tuple(word_vectors.shape)}, expected (V, {config.word_dim})"
            )
        self.config = config
        size = config.embed_dim
        self.embedding = nn.Embedding.from_pretrained(
            word_vectors.float().clone(), freeze=not config.fine_tune_word_vectors
        )
        self.clip_encoder = GRUMaxEncoder(config.video_dim, size)  # f_c: frames -> clip (and v_ctx)
        self.sentence_encoder = GRUMaxEncoder(config.word_dim, size)  # f_s: words -> sentence (p_ctx)
        self.video_encoder: GRUMaxEncoder | None = None
        self.paragraph_encoder: GRUMaxEncoder | None = None
        if config.hierarchical:
            self.video_encoder = GRUMaxEncoder(size, size)  # F_v: clips -> video
            self.paragraph_encoder = GRUMaxEncoder(size, size)  # F_p: sentences -> paragraph
        self.clip_decoder: RepeatDecoder | None = None
        self.sentence_decoder: RepeatDecoder | None = None
        if config.reconstruct:
            self.clip_decoder = RepeatDecoder(size, size)
            self.sentence_decoder = RepeatDecoder(size, size)
        self.frame_decoder: RepeatDecoder | None = None
        self.word_decoder: RepeatDecoder | None = None
        if config.reconstruct_low:
            self.frame_decoder = RepeatDecoder(size, config.video_dim)
            self.word_decoder = RepeatDecoder(size, config.word_dim)

    def forward(self, batch: ParagraphBatch) -> HSEOutput:
        """Embed the batch's videos and paragraphs (each side when the batch has it).

        Args:
            batch: a :class:`RetrievalBatch` (clip frames are read only by HSE, not by FSE).

        Raises:
            DataError: a batch mixing rows with and without a side, or HSE rows without clips.
        """
        out = HSEOutput(videos=None, paragraphs=None)
        if _side_present(batch.video_mask, "frames"):
            self._video(batch, out)
        if _side_present(batch.word_mask, "words"):
            self._paragraph(batch, out)
        if self.training:
            self._reconstruct(batch, out)
        return out

    def _video(self, batch: ParagraphBatch, out: HSEOutput) -> None:
        out.video_context = self.clip_encoder(batch.video, batch.video_mask.sum(dim=1))
        if self.video_encoder is None:
            out.videos = out.video_context
            return
        if not isinstance(batch, RetrievalBatch):
            raise TypeError("hse: the hierarchical model reads the clips of a RetrievalBatch")
        counts = batch.clip_mask.sum(dim=1)
        if not bool((counts > 0).all()):
            raise DataError("hse: a video of the batch has no clip (the spans source needs its sentences)")
        out.clips = self.clip_encoder(batch.clip_frames, batch.clip_length)
        out.videos = self.video_encoder(_scatter(out.clips, batch.clip_mask), counts, out.video_context)

    def _paragraph(self, batch: ParagraphBatch, out: HSEOutput) -> None:
        vectors = self.embedding(batch.words)  # (B, N_W, E)
        if self.training and self.word_decoder is not None:
            out.word_target = vectors[batch.word_mask]  # H-7's targets, in sentence order
        out.paragraph_context = self.sentence_encoder(vectors, batch.word_mask.sum(dim=1))
        if self.paragraph_encoder is None:
            out.paragraphs = out.paragraph_context
            return
        words = self._sentence_words(batch, vectors)
        out.sentences = self.sentence_encoder(words, batch.sentence_length[batch.sentence_mask])
        counts = batch.sentence_mask.sum(dim=1)
        out.paragraphs = self.paragraph_encoder(
            _scatter(out.sentences, batch.sentence_mask), counts, out.paragraph_context
        )

    @staticmethod
    def _sentence_words(batch: ParagraphBatch, vectors: Tensor) -> Tensor:
        """``(M', L, E)`` every sentence's word vectors (``L``: the longest sentence), zero-padded."""
        counts = batch.sentence_mask.sum(dim=1)
        first = torch.cumsum(counts, 0) - counts  # each row's first sentence in the flat order
        sentence = (first[:, None] + batch.word_sentence)[batch.word_mask]  # (W,) flat sentence id
        position = batch.word_position[batch.word_mask]
        lengths = batch.sentence_length[batch.sentence_mask]
        words = vectors.new_zeros((len(lengths), int(lengths.max()), vectors.shape[-1]))
        words[sentence, position] = vectors[batch.word_mask]
        return words

    def _reconstruct(self, batch: ParagraphBatch, out: HSEOutput) -> None:
        """The decoders' outputs (training only: they serve the reconstruction losses alone)."""
        if self.clip_decoder is None or self.sentence_decoder is None:
            return
        if out.videos is None or out.paragraphs is None or out.clips is None or out.sentences is None:
            return
        assert isinstance(batch, RetrievalBatch)  # _video checked it
        out.clip_recon = self.clip_decoder(out.videos, batch.clip_mask.sum(dim=1))
        out.sentence_recon = self.sentence_decoder(out.paragraphs, batch.sentence_mask.sum(dim=1))
        if self.frame_decoder is None or self.word_decoder is None:
            return
        out.frame_recon = self.frame_decoder(out.clip_recon, batch.clip_length)
        out.frame_target = batch.clip_frames[step_mask(batch.clip_length, batch.clip_frames.shape[1])]
        lengths = batch.sentence_length[batch.sentence_mask]
        out.word_recon = self.word_decoder(out.sentence_recon, lengths)
