"""Unsafe model files are refused without being unpickled: no payload ever runs.

Every pickle payload below would write a marker file if anything unpickled it. The payloads
are written opcode by opcode (nothing here imports pickle), and checked statically with
pickletools to be complete pickles that import and call.
"""

from __future__ import annotations

import io
import json
import pickletools
import struct
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from lmforge.cli.__main__ import main
from lmforge.guard import ModelFileReport, UnsafeModelError, scan_model_dir, scan_model_file


def _code(marker: Path) -> str:
    return f"open({str(marker)!r}, 'w').write('pwned')"


def p0(marker: Path) -> bytes:
    """Protocol 0: GLOBAL builtins.exec, MARK, UNICODE code, TUPLE, REDUCE, STOP."""
    return b"cbuiltins\nexec\n(V" + _code(marker).encode() + b"\ntR."


def p0_system(marker: Path) -> bytes:
    return b"cos\nsystem\n(Vtouch " + str(marker).encode() + b"\ntR."


def p1(marker: Path) -> bytes:
    code = _code(marker).encode()
    return b"cbuiltins\nexec\n(X" + struct.pack("<I", len(code)) + code + b"tR."


def p2(marker: Path) -> bytes:
    code = _code(marker).encode()
    return b"\x80\x02cbuiltins\nexec\nX" + struct.pack("<I", len(code)) + code + b"\x85R."


def p4(marker: Path, proto: int = 4) -> bytes:
    code = _code(marker).encode()
    body = (b"\x8c\x08builtins\x8c\x04exec\x93X" + struct.pack("<I", len(code)) + code + b"\x85R.")
    return bytes([0x80, proto]) + b"\x95" + struct.pack("<Q", len(body)) + body


def p5(marker: Path) -> bytes:
    return p4(marker, 5)


PAYLOADS: dict[str, Callable[[Path], bytes]] = {"p0": p0, "p0_system": p0_system, "p1": p1, "p2": p2, "p4": p4,
                                                 "p5": p5}


def safetensors_bytes(header: object, data: bytes = b"", *, raw_header: bytes | None = None,
                      length: int | None = None) -> bytes:
    blob = raw_header if raw_header is not None else json.dumps(header).encode()
    return struct.pack("<Q", len(blob) if length is None else length) + blob + data


def good_header() -> dict:
    return {"__metadata__": {"format": "pt"},
            "a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
            "b": {"dtype": "I64", "shape": [1], "data_offsets": [16, 24]}}


def zip_with(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def tar_with(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def npy(descr: str) -> bytes:
    header = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': (1,), }}".encode()
    header += b" " * (-(10 + len(header) + 1) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header


def malicious(marker: Path) -> dict[str, tuple[str, bytes | None]]:
    """name -> (file name, bytes); bytes None means a sparse oversized file made by the test."""
    h = good_header()
    overlap = {**h, "b": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}}
    gap = {"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
           "b": {"dtype": "F32", "shape": [1], "data_offsets": [8, 12]}}
    return {
        "pickle proto 0 .pkl": ("evil.pkl", p0(marker)),
        "pickle proto 2 pytorch_model.bin": ("pytorch_model.bin", p2(marker)),
        "pickle proto 4 .pt": ("model.pt", p4(marker)),
        "pickle proto 5 .pth": ("model.pth", p5(marker)),
        "pickle .ckpt": ("last.ckpt", p0_system(marker)),
        "pickle .joblib": ("model.joblib", p2(marker)),
        "pickle .pickle": ("model.pickle", p1(marker)),
        "pickle renamed .safetensors (proto 2)": ("model.safetensors", p2(marker)),
        "pickle renamed .safetensors (proto 0)": ("model.safetensors", p0(marker)),
        "pickle renamed .safetensors (proto 1)": ("model.safetensors", p1(marker)),
        "pickle without extension (proto 4)": ("weights", p4(marker)),
        "pickle renamed .onnx": ("model.onnx", p5(marker)),
        "pickle renamed .json": ("config.json", p0_system(marker)),
        "zip-pickle (torch.save) as .safetensors": ("model.safetensors", zip_with(
            {"archive/data.pkl": p2(marker), "archive/version": b"3\n", "archive/data/0": b"\0" * 16})),
        "zip with a pickle member not named .pkl": ("weights.zip", zip_with({"archive/payload": p4(marker)})),
        "legacy torch tar": ("model.data", tar_with({"sys_info": b"x", "pickle": p2(marker), "tensors": b"",
                                                     "storages": b""})),
        "npy of objects": ("arr.npy", npy("|O") + p2(marker)),
        "npz with an object array": ("arrays.npz", zip_with({"a.npy": npy("|O") + p2(marker)})),
        "malformed zip": ("model.zip", b"PK\x03\x04" + b"\x00" * 60),
        "header longer than the file": ("model.safetensors", safetensors_bytes(h, b"\0" * 24, length=10_000)),
        "header over 100 MB (sparse file)": ("big.safetensors", None),
        "header is not JSON": ("model.safetensors", safetensors_bytes(None, raw_header=b"{not json")),
        "header is not UTF-8": ("model.safetensors", safetensors_bytes(None, raw_header=b'{"\xff": 1}')),
        "header is a list": ("model.safetensors", safetensors_bytes([1, 2, 3])),
        "header nested 100k deep": ("model.safetensors", safetensors_bytes(None, raw_header=b"[" * 100_000)),
        "duplicate tensor name": ("model.safetensors", safetensors_bytes(None, b"\0" * 4, raw_header=(
            b'{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},'
            b' "a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}'))),
        "offset out of range": ("model.safetensors", safetensors_bytes(
            {"a": {"dtype": "F32", "shape": [1000], "data_offsets": [0, 4000]}}, b"\0" * 16)),
        "overlapping tensors": ("model.safetensors", safetensors_bytes(overlap, b"\0" * 24)),
        "gap between tensors": ("model.safetensors", safetensors_bytes(gap, b"\0" * 12)),
        "trailing bytes": ("model.safetensors", safetensors_bytes(h, b"\0" * 40)),
        "size does not match shape": ("model.safetensors", safetensors_bytes(
            {"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 16]}}, b"\0" * 16)),
        "unknown dtype": ("model.safetensors", safetensors_bytes(
            {"a": {"dtype": "PYOBJ", "shape": [1], "data_offsets": [0, 8]}}, b"\0" * 8)),
        "negative shape": ("model.safetensors", safetensors_bytes(
            {"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 0]}})),
        "float offsets": ("model.safetensors", safetensors_bytes(
            {"a": {"dtype": "U8", "shape": [4], "data_offsets": [0.0, 4.0]}}, b"\0" * 4)),
        "extra tensor field": ("model.safetensors", safetensors_bytes(
            {"a": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4], "loader": "pickle"}}, b"\0" * 4)),
        "non-string metadata": ("model.safetensors", safetensors_bytes({"__metadata__": {"x": {"y": 1}}})),
        "file shorter than 8 bytes": ("model.safetensors", b"\x10\x00"),
        "empty .safetensors": ("model.safetensors", b""),
    }


CASES = list(malicious(Path("/m")))


@pytest.fixture
def no_unpickling(monkeypatch: pytest.MonkeyPatch) -> None:
    """Belt and braces: any unpickling during a scan fails the test loudly."""
    import pickle

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the scanner tried to unpickle")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, refuse)


def test_payloads_are_real_pickles_that_import_and_call(tmp_path: Path) -> None:
    for name, make in PAYLOADS.items():
        ops = [op.name for op, _arg, _pos in pickletools.genops(make(tmp_path / "m"))]
        assert ops[-1] == "STOP", name
        assert {"GLOBAL", "STACK_GLOBAL"} & set(ops) and "REDUCE" in ops, name


@pytest.mark.parametrize("case", CASES)
def test_malicious_file_is_refused_and_never_runs(tmp_path: Path, case: str, no_unpickling: None) -> None:
    marker = tmp_path / "marker"
    name, data = malicious(marker)[case]
    path = tmp_path / "model" / name
    path.parent.mkdir()
    if data is None:
        with open(path, "wb") as fh:
            fh.write(struct.pack("<Q", 100 * 1024 * 1024 + 1) + b"{")
            fh.truncate(8 + 100 * 1024 * 1024 + 64)  # sparse: no disk used
    else:
        path.write_bytes(data)
    with pytest.raises(UnsafeModelError) as exc:
        scan_model_file(path)
    message = str(exc.value)
    assert str(path) in message and "never loads pickle" in message
    with pytest.raises(UnsafeModelError):
        scan_model_dir(path.parent)
    assert not marker.exists()


def test_at_least_twenty_cases_and_zero_markers_overall(tmp_path: Path, no_unpickling: None) -> None:
    marker = tmp_path / "marker"
    cases = {k: v for k, v in malicious(marker).items() if v[1] is not None}
    assert len(cases) >= 20
    folder = tmp_path / "model"
    for i, (name, data) in enumerate(cases.values()):
        sub = folder / f"{i:02d}"
        sub.mkdir(parents=True)
        assert data is not None
        (sub / name).write_bytes(data)
    with pytest.raises(UnsafeModelError) as exc:
        scan_model_dir(folder)
    assert f"{len(cases)} unsafe file(s)" in str(exc.value)
    assert not marker.exists() and not list(tmp_path.rglob("marker*"))


def test_valid_files_pass(tmp_path: Path) -> None:
    (tmp_path / "model.safetensors").write_bytes(safetensors_bytes(good_header(), b"\0" * 24))
    (tmp_path / "empty.safetensors").write_bytes(safetensors_bytes({}))
    (tmp_path / "zero.safetensors").write_bytes(safetensors_bytes(
        {"z": {"dtype": "F16", "shape": [0, 3], "data_offsets": [0, 0]}}))
    (tmp_path / "config.json").write_text('{"a": 1}', encoding="utf-8")
    (tmp_path / "vocab.txt").write_text("[PAD]\n[UNK]\nhello\n", encoding="utf-8")
    (tmp_path / "floats.npy").write_bytes(npy("<f4") + b"\0" * 4)
    reports = {Path(r.path).name: r for r in scan_model_dir(tmp_path)}
    assert reports["model.safetensors"] == ModelFileReport(str(tmp_path / "model.safetensors"), "safetensors",
                                                           8 + len(json.dumps(good_header())) + 24, 2)
    assert reports["zero.safetensors"].tensors == 1 and reports["config.json"].format == "other"
    assert reports["floats.npy"].format == "npy"


def test_real_safetensors_files_pass(tmp_path: Path) -> None:
    st = pytest.importorskip("safetensors.numpy")
    import numpy as np

    st.save_file({"w": np.ones((3, 4), dtype=np.float32), "b": np.arange(5, dtype=np.int64)},
                 str(tmp_path / "model.safetensors"), metadata={"format": "np"})
    assert scan_model_file(tmp_path / "model.safetensors").tensors == 2
    from lmforge.catalog import resolve_model

    try:
        packaged = resolve_model("minilm-l6")
    except Exception:  # the packaged model is an optional asset
        pytest.skip("packaged model not installed")
    assert any(r.format == "safetensors" and r.tensors > 100 for r in scan_model_dir(packaged))


def test_cli_scan_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "ok.safetensors").write_bytes(safetensors_bytes(good_header(), b"\0" * 24))
    assert main(["scan-model", str(tmp_path)]) == 0
    assert "1 file(s) scanned" in capsys.readouterr().out
    (tmp_path / "pytorch_model.bin").write_bytes(p2(tmp_path / "marker"))
    assert main(["scan-model", str(tmp_path)]) == 2
    assert "pytorch_model.bin" in capsys.readouterr().err and not (tmp_path / "marker").exists()
