"""A short knowledge-distillation fine-tune: recovery after pruning, and student training.

A small explicit loop rather than the HF Trainer: the loss mixes the teacher's softened
logits with the labels, there is no evaluation or checkpointing to do, and it runs for a
few hundred steps. Loss = alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE
(Hinton et al., 2015). Batches are seeded and padded to their own longest text.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import numpy as np

from lmforge._extras import require

__all__ = ["distill", "logits_of"]

logger = logging.getLogger(__name__)


def _encode(tokenizer: Any, texts: list[str], max_length: int) -> list[list[int]]:
    return tokenizer(texts, truncation=True, max_length=max_length, padding=False)["input_ids"]


def _batch(tokenizer: Any, ids: list[list[int]], index: np.ndarray) -> dict[str, Any]:
    return tokenizer.pad({"input_ids": [ids[i] for i in index]}, return_tensors="pt")


def logits_of(model: Any, tokenizer: Any, texts: list[str], max_length: int, batch_size: int = 64) -> np.ndarray:
    """(N, C) float32 logits of ``model`` over ``texts`` (length-sorted batches, input order out)."""
    torch = require("torch", extra="train", purpose="Distillation")
    ids = _encode(tokenizer, texts, max_length)
    order = np.argsort([len(x) for x in ids], kind="stable")
    out: np.ndarray | None = None
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(ids), batch_size):
            idx = order[start : start + batch_size]
            logits = model(**_batch(tokenizer, ids, idx)).logits.float().numpy()  # (B, C)
            if out is None:
                out = np.zeros((len(ids), logits.shape[1]), dtype=np.float32)
            out[idx] = logits
    return out if out is not None else np.zeros((0, 0), dtype=np.float32)


def distill(student: Any, tokenizer: Any, texts: list[str], labels: np.ndarray, teacher_logits: np.ndarray, *,
            steps: int, max_length: int, batch_size: int, learning_rate: float, temperature: float, alpha: float,
            seed: int) -> dict[str, Any]:
    """Train ``student`` in place for ``steps`` optimizer steps; return what to record.

    Args:
        student: the model to train (fp32).
        tokenizer: a Hugging Face tokenizer (pads the batches).
        texts: training texts.
        labels: their class indices, shape (N,).
        teacher_logits: the teacher's logits on ``texts``, shape (N, C).
        steps: optimizer steps (batches of ``batch_size``; epochs follow from N).
        max_length: truncation length.
        batch_size: examples per step.
        learning_rate: peak LR (6 % linear warm-up, then linear decay to 0).
        temperature: softening of both distributions in the KL term.
        alpha: weight of the KL term; ``1 - alpha`` goes to cross-entropy on ``labels``.
        seed: order of the batches and dropout.
    """
    torch = require("torch", extra="train", purpose="Distillation")
    functional = torch.nn.functional
    if steps <= 0 or not texts:
        return {"steps": 0, "seconds": 0.0}
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    ids = _encode(tokenizer, texts, max_length)
    y = torch.as_tensor(labels, dtype=torch.long)
    teacher = torch.as_tensor(teacher_logits, dtype=torch.float32)
    optim = torch.optim.AdamW(student.parameters(), lr=learning_rate, weight_decay=0.01)
    warm = max(1, int(0.06 * steps))
    sched = torch.optim.lr_scheduler.LambdaLR(
        optim, lambda s: min((s + 1) / warm, max(0.0, (steps - s) / max(1, steps - warm)))
    )
    student.train()
    order = rng.permutation(len(ids))
    pos, losses = 0, []
    start = time.perf_counter()
    for _ in range(steps):
        if pos + batch_size > len(order):
            order, pos = rng.permutation(len(ids)), 0
        idx = order[pos : pos + batch_size]
        pos += batch_size
        logits = student(**_batch(tokenizer, ids, idx)).logits  # (B, C)
        soft_t = functional.log_softmax(teacher[idx] / temperature, dim=-1)
        soft_s = functional.log_softmax(logits / temperature, dim=-1)
        kl = functional.kl_div(soft_s, soft_t, log_target=True, reduction="batchmean") * temperature**2
        ce = functional.cross_entropy(logits, y[idx])
        loss = alpha * kl + (1.0 - alpha) * ce
        optim.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
        optim.step()
        sched.step()
        losses.append(float(loss.detach()))
    student.eval()
    seconds = time.perf_counter() - start
    tail = losses[-max(1, len(losses) // 10) :]
    logger.info("distilled %d steps in %.1fs, final loss %.4f", steps, seconds, float(np.mean(tail)))
    return {
        "steps": steps,
        "epochs": round(steps * batch_size / len(ids), 3),
        "seconds": round(seconds, 2),
        "first_loss": round(losses[0], 6),
        "final_loss": round(float(np.mean(tail)), 6),
        "batch_size": batch_size,
        "learning_rate": learning_rate,
        "temperature": temperature,
        "alpha": alpha,
        "loss": "alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE(labels)",
        "finite": bool(all(math.isfinite(v) for v in losses)),
    }
