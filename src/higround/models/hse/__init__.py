"""HSE (Zhang, Hu, Sha, "Cross-Modal and Hierarchical Modeling of Video and Text", ECCV 2018) and its
flat baseline FSE: video <-> paragraph retrieval by hierarchical sequence embedding (docs/hse.md).

Modules: :mod:`.config` (every hyper-parameter and loss switch), :mod:`.encoders` (the GRU
max-pooled over time, supp. §1), :mod:`.decoders` (the reconstruction decoders), :mod:`.model`
(the hierarchical wiring, and FSE), :mod:`.family` (the family value). The losses are
:mod:`higround.losses.hse`; the data unit is :mod:`higround.data.retrieval`.
"""

from higround.models.hse.config import LOSS_TERMS, HSEConfig
from higround.models.hse.family import HSE_FAMILY
from higround.models.hse.model import HSE, HSEOutput

__all__ = ["HSE", "HSE_FAMILY", "LOSS_TERMS", "HSEConfig", "HSEOutput"]
