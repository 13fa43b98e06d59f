"""The E5S1 reader and the multilingual-e5 converter, on a tiny file written by the test."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
from tests._tiny_e5 import FF, MAXP, NL, PIECES, VOC, H, TinyE5, write_e5s1, write_tokenizer

from lmforge.catalog._cache import CACHE_META, converted
from lmforge.catalog._e5 import convert_e5
from lmforge.catalog._e5s1 import dequantize_q4_0, read_e5s1
from lmforge.errors import LmforgeError


def test_a_hand_made_block_dequantizes_as_the_engine_reads_it() -> None:
    # scale 0.5; byte j holds value j (low nibble) and value j+16 (high nibble); value = (nibble - 8) * scale
    qs = bytes([0x0F, 0x80, 0x8F, 0x7A] + [0x88] * 12)
    block = struct.pack("<e", 0.5) + qs
    out = dequantize_q4_0(block, 32)
    expected = np.zeros(32, dtype=np.float32)
    expected[0], expected[16] = (15 - 8) * 0.5, (0 - 8) * 0.5   # 0x0F: low 15, high 0
    expected[1], expected[17] = (0 - 8) * 0.5, (8 - 8) * 0.5    # 0x80: low 0, high 8
    expected[2], expected[18] = 3.5, 0.0                        # 0x8F
    expected[3], expected[19] = 1.0, -0.5                       # 0x7A: low 10, high 7
    assert out.dtype == np.float32
    assert out.tolist() == expected.tolist()
    # a second block with a negative fp16 scale: every value flips sign
    two = dequantize_q4_0(block + struct.pack("<e", -0.25) + qs, 64)
    assert two[:32].tolist() == expected.tolist()
    assert two[32:].tolist() == (-expected / 2).tolist()


def test_blocks_of_the_wrong_size_are_refused() -> None:
    with pytest.raises(LmforgeError, match="whole blocks of 32"):
        dequantize_q4_0(b"\0" * 18, 31)
    with pytest.raises(LmforgeError, match="is 18 bytes, got 17"):
        dequantize_q4_0(b"\0" * 17, 32)


def test_the_reader_returns_every_tensor_with_its_shape_and_exact_values(tiny_e5: TinyE5) -> None:
    e5 = read_e5s1(tiny_e5.model)
    assert (e5.hidden, e5.layers, e5.intermediate, e5.vocab_rows, e5.max_positions) == (H, NL, FF, VOC, MAXP)
    assert (e5.bos, e5.eos, e5.pad, e5.unk) == (0, 2, 1, 3)
    assert e5.pieces == PIECES
    assert sorted(e5.tensors) == sorted(tiny_e5.expected)
    assert e5.tensors["emb.word"].shape == (VOC, H)
    assert e5.tensors["l0.fi.w"].shape == (FF, H)
    assert e5.tensors["l0.fo.w"].shape == (H, FF)
    for name, values in tiny_e5.expected.items():
        np.testing.assert_array_equal(e5.tensors[name], values, err_msg=name)


@pytest.mark.parametrize(("cut", "match"), [(lambda b: b"E5S2" + b[4:], "no 'E5S1' magic"),
                                            (lambda b: b[:100], "truncated or malformed"),
                                            (lambda b: b[:-10], "outside the file")])
def test_a_damaged_file_is_refused(tiny_e5: TinyE5, cut, match: str) -> None:
    tiny_e5.model.write_bytes(cut(tiny_e5.model.read_bytes()))
    with pytest.raises(LmforgeError, match=match):
        read_e5s1(tiny_e5.model)


def _convert(tiny: TinyE5, version: str = "1") -> Path:
    sources = [tiny.model, tiny.tokenizer]
    return converted("tiny-e5", sources, version, lambda folder: convert_e5(folder, sources))


def test_the_converted_folder_is_a_bert_model_with_the_dequantized_weights(
        tiny_e5: TinyE5, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch
    import transformers
    from safetensors.numpy import load_file

    monkeypatch.setenv("LMFORGE_HOME", str(tmp_path / "home"))
    folder = _convert(tiny_e5)
    assert folder == tmp_path / "home" / "models" / "tiny-e5"
    weights = load_file(str(folder / "model.safetensors"))
    np.testing.assert_array_equal(weights["embeddings.word_embeddings.weight"], tiny_e5.expected["emb.word"])
    np.testing.assert_array_equal(weights["encoder.layer.0.attention.self.query.weight"], tiny_e5.expected["l0.q.w"])
    np.testing.assert_array_equal(weights["encoder.layer.0.output.dense.weight"], tiny_e5.expected["l0.fo.w"])
    np.testing.assert_array_equal(weights["encoder.layer.0.output.LayerNorm.bias"], tiny_e5.expected["l0.oln.b"])
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    assert (config["vocab_size"], config["hidden_size"], config["pad_token_id"]) == (VOC, H, 1)
    # no missing and no unexpected keys for a pooler-less BertModel
    model = transformers.BertModel(transformers.BertConfig(**config), add_pooling_layer=False)
    result = model.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()}, strict=True)
    assert (result.missing_keys, result.unexpected_keys) == ([], [])
    tok = transformers.AutoTokenizer.from_pretrained(folder)
    assert (tok.pad_token_id, tok.unk_token_id, tok.cls_token_id, tok.sep_token_id) == (1, 3, 0, 2)
    assert tok("好吃")["input_ids"] == [0, 5, 6, 2]


def test_cached_then_rebuilt_when_a_source_or_the_version_changes(
        tiny_e5: TinyE5, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from safetensors.numpy import load_file

    monkeypatch.setenv("LMFORGE_HOME", str(tmp_path / "home"))
    folder = _convert(tiny_e5)
    meta, weights = folder / CACHE_META, folder / "model.safetensors"
    first = (meta.stat().st_mtime_ns, weights.stat().st_ino, meta.read_text(encoding="utf-8"))
    assert _convert(tiny_e5) == folder
    assert (meta.stat().st_mtime_ns, weights.stat().st_ino, meta.read_text(encoding="utf-8")) == first

    expected = write_e5s1(tiny_e5.model, seed=1)  # the packaged file changed (a new release)
    assert _convert(tiny_e5) == folder
    assert weights.stat().st_ino != first[1]
    digests = json.loads(meta.read_text(encoding="utf-8"))["sources"]
    assert digests != json.loads(first[2])["sources"]
    np.testing.assert_array_equal(load_file(str(weights))["encoder.layer.0.attention.self.key.weight"],
                                  expected["l0.k.w"])
    second = weights.stat().st_ino
    _convert(tiny_e5, version="2")
    assert weights.stat().st_ino != second
    assert json.loads(meta.read_text(encoding="utf-8"))["version"] == "2"


def test_a_tokenizer_from_another_vocabulary_is_refused_and_nothing_is_cached(
        tiny_e5: TinyE5, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LMFORGE_HOME", str(tmp_path / "home"))
    write_tokenizer(tiny_e5.tokenizer, [*PIECES[:5], "▁坏", *PIECES[6:]])
    with pytest.raises(LmforgeError, match="does not match the E5S1 model's vocabulary .* first difference at id 5"):
        _convert(tiny_e5)
    assert list((tmp_path / "home" / "models").iterdir()) == []


@pytest.mark.parametrize("name", ["l0.q.w.extra", "l0.pooler.w", "x0.q.w", "emb.other"])
def test_a_tensor_name_the_converter_does_not_know_is_refused(name: str) -> None:
    from lmforge.catalog._e5 import _bert_name

    assert _bert_name("l11.fo.b") == "encoder.layer.11.output.dense.bias"
    with pytest.raises(LmforgeError, match=f"E5S1 tensor '{name}' is not one this converter knows"):
        _bert_name(name)
