"""Combined variants: smaller networks, then exported and quantized.

Distillation removes layers, pruning removes heads and FFN neurons inside layers, dynamic
int8 shrinks every remaining weight and speeds up its matmuls; the three compose. Each
combination builds on the folder of the variant before it (built first when only the
combination is asked for): ``distilled -> distilled-int8``, ``pruned -> pruned-int8``,
``distilled -> distilled-pruned -> distilled-pruned-int8``.
"""

from __future__ import annotations

from lmforge.compress._int8_dynamic import OnnxInt8Dynamic
from lmforge.compress._pruned import Pruned
from lmforge.compress._register import register_compressor


@register_compressor("distilled-int8")
class DistilledInt8(OnnxInt8Dynamic):
    """The distilled student, exported to ONNX with dynamic int8."""

    name = "distilled-int8"
    source = "distilled"
    tolerance = 0.25  # measured 0.098 on the tests' tiny run (the distilled student's, plus int8)
    description = "distilled student -> ONNX, dynamic int8"


@register_compressor("pruned-int8")
class PrunedInt8(OnnxInt8Dynamic):
    """The pruned model, exported to ONNX with dynamic int8."""

    name = "pruned-int8"
    source = "pruned"
    tolerance = 0.4  # measured 0.153 on the tests' tiny run (the pruned model's, plus int8)
    description = "pruned model -> ONNX, dynamic int8"


@register_compressor("distilled-pruned")
class DistilledPruned(Pruned):
    """The distilled student, pruned by importance and recovered against the original teacher."""

    name = "distilled-pruned"
    source = "distilled"
    description = "distilled student, heads and FFN neurons pruned, recovered by distillation"


@register_compressor("distilled-pruned-int8")
class DistilledPrunedInt8(OnnxInt8Dynamic):
    """The pruned student, exported to ONNX with dynamic int8: the smallest network lmforge builds."""

    name = "distilled-pruned-int8"
    source = "distilled-pruned"
    tolerance = 0.4  # measured 0.153 on the tests' tiny run (the pruned student's, plus int8)
    description = "distilled + pruned student -> ONNX, dynamic int8"
