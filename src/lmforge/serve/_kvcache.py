"""The decode batch's state: a left-padded KV cache of the running rows and its attention mask.

:class:`Packed` is what the decode thread keeps between steps. Rows join (a prefilled
sequence's cache, left-padded to the batch's width) and leave (their rows dropped, and the
leading columns no remaining row uses cut); in between, each step writes its column into the
cache's spare room (:func:`lmforge.predict.growing_cache`) rather than re-concatenating it.
"""

from __future__ import annotations

from typing import Any

from lmforge.predict import growing_cache

__all__ = ["Packed"]


class Packed:
    """The running batch's KV cache (B rows, left-padded) and its (B, T) attention mask."""

    def __init__(self, config: Any = None) -> None:
        self.config = config
        """The model's (see :func:`lmforge.predict.growing_cache`)."""
        self.cache: Any = None
        self.mask: Any = None

    def _layers(self) -> list[tuple[Any, Any]]:
        return [(layer.keys, layer.values) for layer in self.cache.layers]

    def join(self, torch: Any, cache: Any, length: int) -> None:
        """Stack a prefilled row's cache (``length`` tokens) under the batch, left-padding the narrower."""
        new = [(layer.keys, layer.values) for layer in cache.layers]
        if self.cache is None:  # the prefill's own cache (grown in place already) is the batch
            self.cache, self.mask = cache, torch.ones((1, length), dtype=torch.long)
            return
        width = max(self.mask.shape[1], length)
        pad_old, pad_new = width - self.mask.shape[1], width - length
        F = torch.nn.functional
        layers = [
            (torch.cat([F.pad(k0, (0, 0, pad_old, 0)), F.pad(k1, (0, 0, pad_new, 0))]),
             torch.cat([F.pad(v0, (0, 0, pad_old, 0)), F.pad(v1, (0, 0, pad_new, 0))]))
            for (k0, v0), (k1, v1) in zip(self._layers(), new, strict=True)
        ]
        self.mask = torch.cat([F.pad(self.mask, (pad_old, 0)), F.pad(torch.ones((1, length), dtype=torch.long),
                                                                      (pad_new, 0))])
        self.cache = growing_cache(self.config, layers)

    def step(self, torch: Any) -> Any:
        """The mask with one more column for the token about to be fed (every row attends to it)."""
        self.mask = torch.cat([self.mask, torch.ones((self.mask.shape[0], 1), dtype=torch.long)], dim=-1)
        return self.mask

    def select(self, torch: Any, keep: list[int]) -> None:
        """Keep rows ``keep`` only, and cut the leading columns none of them uses."""
        if not keep:
            self.cache = self.mask = None
            return
        index = torch.tensor(keep, dtype=torch.long)
        mask = self.mask.index_select(0, index)
        used = mask.any(dim=0).nonzero()
        first = int(used[0]) if len(used) else 0
        self.mask = mask[:, first:]
        kept = [(k.index_select(0, index)[:, :, first:], v.index_select(0, index)[:, :, first:])
                for k, v in self._layers()]
        self.cache = growing_cache(self.config, kept)
