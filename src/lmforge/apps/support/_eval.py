"""``lmforge bot eval DIR --input labeled.jsonl``: the bot's numbers on labeled turns, and a report.

Records hold ``text`` and ``intent`` (``bot.oos.label``, default ``oos``, marks an out-of-scope
one), optionally ``session_id`` (turns of a session run in file order, as ``bot ask`` does) and
``answer`` (the reference for ROUGE-L; without it the best ROUGE-L against the FAQ answers of
the record's intent is taken). Every metric is one of the shared ones: ``rouge_l_f``,
``macro_f1``, the monitor's ``roc_auc``.
"""

from __future__ import annotations

import html
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from lmforge._jsonl import iter_text_records
from lmforge.apps.support._answer import fill_placeholders
from lmforge.apps.support._bot import Bot, Turn
from lmforge.apps.support._layout import EVAL, METRICS, REPORT
from lmforge.errors import DataError
from lmforge.evaluate import rouge_l_f
from lmforge.metrics import macro_f1
from lmforge.monitor import roc_auc
from lmforge.rundir import atomic_write_json, atomic_write_text

__all__ = ["evaluate_bot", "faq_ranks", "read_labeled", "render_bot_report"]


def read_labeled(path: str | Path) -> list[dict[str, Any]]:
    """The records of a labeled file; each needs a string ``text`` and a string ``intent``."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"--input {path} does not exist.")
    with path.open(encoding="utf-8") as fh:
        records = list(iter_text_records(fh, path, "text"))
    for n, record in enumerate(records, 1):
        if not isinstance(record.get("intent"), str):
            raise DataError(f"{path} record {n} has no string field 'intent' (fields: {', '.join(record)}); "
                            "label every record with its intent (or the bot.oos.label for out-of-scope ones).")
    if not records:
        raise DataError(f"{path} holds no records.")
    return records


def faq_ranks(bot: Bot, texts: list[str], intents: list[str], weight: float | None = None) -> list[int | None]:
    """Per question, the 1-based rank of the first FAQ entry of its intent over the whole FAQ (no intent
    filter: retrieval alone), None when the FAQ has no entry of that intent."""
    if bot.faq is None:
        return [None] * len(texts)
    w = float(bot.cfg["faq"]["embedding_weight"]) if weight is None else weight
    embs = bot.models.embed(texts)
    entry_intents = np.array([e.intent for e in bot.faq.entries], dtype=object)
    known = set(entry_intents)
    out: list[int | None] = []
    for text, intent, emb in zip(texts, intents, embs, strict=True):
        if intent not in known:
            out.append(None)
            continue
        order = np.argsort(-bot.faq.scores(emb, text, w), kind="stable")
        out.append(int(np.flatnonzero(entry_intents[order] == intent)[0]) + 1)
    return out


def _reference_rouge(bot: Bot, turn: Turn, record: dict[str, Any]) -> float | None:
    if isinstance(record.get("answer"), str):
        return rouge_l_f(turn.answer or "", record["answer"])
    if bot.faq is None:
        return None
    refs = [fill_placeholders(e.answer, bot.cfg["placeholders"]) or e.answer
            for e in bot.faq.entries if e.intent == record["intent"]]
    return max((rouge_l_f(turn.answer or "", r) for r in refs), default=None)


def _worst(gold: list[str], pred: list[str], k: int = 5) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for intent in sorted(set(gold)):
        idx = [i for i, g in enumerate(gold) if g == intent]
        wrong = Counter(pred[i] for i in idx if pred[i] != intent)
        rows.append({"intent": intent, "n": len(idx), "accuracy": round(1 - sum(wrong.values()) / len(idx), 4),
                     "confused_with": dict(wrong.most_common(3))})
    rows.sort(key=lambda r: (r["accuracy"], -r["n"], r["intent"]))
    return rows[:k]


def _rate(num: float, den: float) -> float | None:
    return round(num / den, 4) if den else None


def evaluate_bot(folder: str | Path, input_path: str | Path, bot: Bot | None = None, *,
                 public_key: str | Path | None = None, allow_unsigned: bool = False) -> dict[str, Any]:
    """Run the bot over a labeled file; write ``DIR/eval/bot_metrics.json`` and ``bot_report.html``.

    ``bot``: the loaded bot of ``folder`` (e.g. with another OOS method); None loads it, verified
    with ``public_key`` / ``allow_unsigned`` as ``Bot.load`` does.
    """
    folder = Path(folder)
    records = read_labeled(input_path)
    bot = bot if bot is not None else Bot.load(folder, public_key=public_key, allow_unsigned=allow_unsigned)
    bot.reset()
    oos_label = str(bot.cfg["oos"]["label"])
    turns = bot.turns([r["text"] for r in records], [r.get("session_id") for r in records])
    gold = [r["intent"] for r in records]
    pred = [t.intent if t.intent is not None else oos_label for t in turns]
    is_oos = np.array([g == oos_label for g in gold])
    flagged = np.array([t.out_of_scope for t in turns])
    in_idx = np.flatnonzero(~is_oos)
    classes = sorted(set(bot.labels) | {oos_label} | set(gold))
    index = {c: i for i, c in enumerate(classes)}
    auroc = roc_auc(is_oos, -np.array([t.oos_score for t in turns])) if 0 < is_oos.sum() < len(is_oos) else None
    ranks = faq_ranks(bot, [records[i]["text"] for i in in_idx], [gold[i] for i in in_idx])
    ranked = [r for r in ranks if r is not None]
    rouges = [x for i in in_idx if (x := _reference_rouge(bot, turns[i], records[i])) is not None]
    metrics: dict[str, Any] = {
        "n": len(records), "n_in_scope": int(len(in_idx)), "n_oos": int(is_oos.sum()),
        "in_scope_accuracy": _rate(sum(pred[i] == gold[i] for i in in_idx), len(in_idx)),
        "oos_recall": _rate(int((flagged & is_oos).sum()), int(is_oos.sum())),
        "oos_precision": _rate(int((flagged & is_oos).sum()), int(flagged.sum())),
        "oos_auroc": None if auroc is None else round(auroc, 4),
        "macro_f1": round(macro_f1([index[g] for g in gold], [index[p] for p in pred], len(classes)), 4),
        "faq_hit_at_1": _rate(sum(r == 1 for r in ranked), len(ranked)),
        "faq_mrr": _rate(sum(1.0 / r for r in ranked), len(ranked)), "n_faq": len(ranked),
        "answer_rouge_l": round(float(np.mean(rouges)), 4) if rouges else None, "n_answer_refs": len(rouges),
        "answered_rate": _rate(sum(t.answer is not None for t in turns), len(turns)),
        "escalation_rate": _rate(sum(t.escalate for t in turns), len(turns)),
        "reasons": dict(Counter(t.reason for t in turns).most_common()),
        "oos_method": bot.method, "oos_threshold": bot.threshold,
        "worst_intents": _worst(gold, pred),
    }
    out = folder / EVAL
    out.mkdir(exist_ok=True)
    atomic_write_json(out / METRICS, metrics)
    atomic_write_text(out / REPORT, render_bot_report(metrics))
    return metrics


_CSS = ("body{font-family:system-ui,sans-serif;margin:2em;max-width:60em}table{border-collapse:collapse;"
        "margin:1em 0}td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left}td.n{text-align:right}")


def render_bot_report(metrics: dict[str, Any]) -> str:
    """A self-contained HTML page (no scripts, no external files) of the metrics."""
    e = html.escape
    rows = "".join(f"<tr><th>{e(k)}</th><td class=n>{e('-' if v is None else str(v))}</td></tr>"
                   for k, v in metrics.items() if not isinstance(v, dict | list))
    worst = "".join(
        f"<tr><td>{e(r['intent'])}</td><td class=n>{r['n']}</td><td class=n>{r['accuracy']}</td>"
        f"<td>{e(', '.join(f'{k} ({v})' for k, v in r['confused_with'].items()))}</td></tr>"
        for r in metrics["worst_intents"])
    reasons = "".join(f"<tr><td>{e(k)}</td><td class=n>{v}</td></tr>" for k, v in metrics["reasons"].items())
    return (f"<!doctype html><html><head><meta charset=utf-8><title>Bot evaluation</title><style>{_CSS}</style>"
            f"</head><body><h1>Bot evaluation</h1><table>{rows}</table><h2>Worst intents</h2><table><tr><th>intent"
            f"</th><th>n</th><th>accuracy</th><th>confused with</th></tr>{worst}</table><h2>Reasons</h2><table>"
            f"<tr><th>reason</th><th>turns</th></tr>{reasons}</table></body></html>\n")
