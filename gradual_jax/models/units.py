"""Where a model's hidden units are: the parameters ReDo and continual backprop reset together.

Each model names its own unit layers (``unit_layers`` beside its definition, listed in the
model registry); the mitigations only read these descriptions.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class UnitLayer:
    """One layer's hidden units, by leaf path ("hidden/0/kernel").

    * ``kernel``: the incoming kernel, units on its **last** axis (``[fan_in, units]``, or a conv
      kernel ``[kh, kw, in, units]``; fan-in is the product of the other axes);
    * ``bias``: the incoming bias ``[units]`` (optional);
    * ``norm_scale`` / ``norm_bias``: the normalisation γ, β of the units (optional);
    * ``out_kernel``: the next layer's kernel, units on axis **-2** (``[units·copies, fan_out]``);
      ``copies`` is 2 for CReLU, whose unit j feeds rows j and j + units.
    """

    kernel: str
    out_kernel: str
    bias: str | None = None
    norm_scale: str | None = None
    norm_bias: str | None = None
    copies: int = 1
