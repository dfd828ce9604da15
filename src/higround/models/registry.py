"""The one table of model families (docs/families.md): ``model.family`` of a recipe to its family.

Nothing outside this table names a family: the engine, the checkpoints and the commands look the
family up here by the name a recipe or checkpoint gives. A recipe or checkpoint that names no family
is HSCNet's (:data:`DEFAULT_FAMILY`): every recipe and checkpoint from before families still loads.
"""

from __future__ import annotations

from typing import Any

from higround.errors import ConfigError
from higround.models.family import ModelFamily
from higround.models.hscnet.family import HSCNET_FAMILY
from higround.models.hse.family import HSE_FAMILY
from higround.models.lgi.family import LGI_FAMILY
from higround.models.moment_detr.family import MOMENT_DETR_FAMILY
from higround.models.prvg.family import PRVG_FAMILY
from higround.models.qd_detr.family import QD_DETR_FAMILY
from higround.models.tan2d.family import TAN2D_FAMILY

FAMILIES: dict[str, ModelFamily[Any, Any]] = {
    HSCNET_FAMILY.name: HSCNET_FAMILY,
    TAN2D_FAMILY.name: TAN2D_FAMILY,
    LGI_FAMILY.name: LGI_FAMILY,
    PRVG_FAMILY.name: PRVG_FAMILY,
    MOMENT_DETR_FAMILY.name: MOMENT_DETR_FAMILY,
    QD_DETR_FAMILY.name: QD_DETR_FAMILY,
    HSE_FAMILY.name: HSE_FAMILY,
}

DEFAULT_FAMILY = HSCNET_FAMILY.name


def family_names() -> list[str]:
    """The names of the known families, sorted."""
    return sorted(FAMILIES)


def get_family(name: str, where: str = "model.family") -> ModelFamily[Any, Any]:
    """The family called ``name``.

    Raises:
        ConfigError: no family has that name; one line naming ``where`` it came from and the known
            families.
    """
    family = FAMILIES.get(name) if isinstance(name, str) else None
    if family is None:
        raise ConfigError(
            f"{where}: {name!r} is not a model family of this higround; known: {', '.join(family_names())}"
        )
    return family
