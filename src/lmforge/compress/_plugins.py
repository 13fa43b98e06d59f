"""Import every built-in compressor so it registers; the order here is the default build order."""
# ruff: noqa: I001  (the order is deliberate: fast conversions first, retraining last)

from lmforge.compress import _onnx_fp32  # noqa: F401
from lmforge.compress import _int8_dynamic  # noqa: F401
from lmforge.compress import _int8_static  # noqa: F401
from lmforge.compress import _bf16  # noqa: F401
from lmforge.compress import _merged  # noqa: F401
from lmforge.compress import _pruned  # noqa: F401
from lmforge.compress import _distilled  # noqa: F401
from lmforge.compress import _combined  # noqa: F401
from lmforge.compress import _gen_compressors  # noqa: F401
