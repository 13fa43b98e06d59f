"""The decode batch's growing KV cache: what the attention sees equals transformers' concatenating cache,
through every reallocation, and rows join and leave as before."""

from __future__ import annotations

import torch
import transformers

from lmforge.predict import growing_cache
from lmforge.serve._kvcache import Packed


def _kv(batch: int, length: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, length, 4, generator=g), torch.randn(batch, 3, length, 5, generator=g)


def test_appends_equal_concatenation_across_every_reallocation() -> None:
    k0, v0 = _kv(2, 5, 0)
    cache = growing_cache(layers=[(k0, v0), (k0 + 1, v0 + 1)])
    reference = transformers.DynamicCache()
    reference.update(k0, v0, 0)
    reference.update(k0 + 1, v0 + 1, 1)
    capacities = set()
    # 150 one-token steps cross two doublings (room 69, then 138, 276); one 300-token block overflows even a doubled buffer
    for step, width in enumerate([1] * 150 + [300, 1, 1]):
        k, v = _kv(2, width, step + 1)
        for layer in (0, 1):
            got = cache.update(k + layer, v + layer, layer)
            want = reference.update(k + layer, v + layer, layer)
            assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
        capacities.add(cache.layers[0]._kbuf.shape[-2])
    assert cache.get_seq_length() == reference.get_seq_length() == 5 + 150 + 300 + 2
    assert len(capacities) >= 3  # the buffers did grow, more than once
    # the views handed out are the filled part only, and the earlier columns were not disturbed by growing
    assert torch.equal(cache.layers[1].keys[:, :, :5], k0 + 1)


def test_an_empty_cache_is_filled_by_its_first_update_and_sliding_window_models_keep_their_own() -> None:
    cache = growing_cache(transformers.LlamaConfig(num_hidden_layers=2))
    k, v = _kv(1, 7, 4)
    cache.update(k, v, 0)
    cache.update(k, v, 1)
    assert [type(layer).__name__ for layer in cache.layers] == ["_GrowingLayer"] * 2
    assert torch.equal(cache.update(k[:, :, :1], v[:, :, :1], 0)[0], torch.cat([k, k[:, :, :1]], dim=-2))
    sliding = transformers.MistralConfig(num_hidden_layers=2, sliding_window=16)
    assert "_GrowingLayer" not in {type(layer).__name__ for layer in growing_cache(sliding).layers}


def test_methods_that_replace_the_tensors_are_followed_by_a_fresh_buffer() -> None:
    k0, v0 = _kv(3, 6, 5)
    cache, reference = growing_cache(layers=[(k0, v0)]), transformers.DynamicCache()
    reference.update(k0, v0, 0)
    order = torch.tensor([2, 0, 1])
    cache.reorder_cache(order)  # beam search's reordering: index_select builds new tensors
    reference.reorder_cache(order)
    cache.crop(-2)  # assisted decoding's crop: a shorter view of the same buffer
    reference.crop(-2)
    k, v = _kv(3, 2, 6)
    got, want = cache.update(k, v, 0), reference.update(k, v, 0)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])


def test_rows_join_left_padded_and_leave_with_unused_leading_columns_cut() -> None:
    state = Packed()
    short, long = _kv(1, 3, 1), _kv(1, 6, 2)
    for kv, n in ((short, 3), (long, 6)):
        single = transformers.DynamicCache()
        single.update(kv[0], kv[1], 0)
        state.join(torch, single, n)
    assert state.mask.tolist() == [[0, 0, 0, 1, 1, 1], [1, 1, 1, 1, 1, 1]]
    keys = state.cache.layers[0].keys
    assert torch.equal(keys[0, :, 3:], short[0][0]) and torch.equal(keys[0, :, :3], torch.zeros(3, 3, 4))
    assert torch.equal(keys[1], long[0][0])
    assert state.step(torch).tolist() == [[0, 0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1]]
    state.cache.update(*_kv(2, 1, 3), 0)
    state.select(torch, [0])  # the long row leaves: the short row's three padding columns go too
    assert state.mask.tolist() == [[1, 1, 1, 1]]
    assert torch.equal(state.cache.layers[0].keys[0, :, :3], short[0][0])
    assert state.cache.get_seq_length() == 4
    state.select(torch, [])
    assert state.cache is None and state.mask is None
