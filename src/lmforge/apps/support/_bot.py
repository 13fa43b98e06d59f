"""``lmforge bot ask``: one loaded bot answering turns; its sessions live in memory unless a store is given.

A turn goes: intent logits (and the pooled embedding when the OOS method or the FAQ needs it)
-> out-of-scope score against the calibrated threshold -> FAQ retrieval among the predicted
intent's entries -> placeholders -> optional grounded rewrite -> escalation rules. The reply
is exactly the contract of issue 16 (:data:`REPLY_KEYS`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lmforge._extras import require
from lmforge.apps.support._answer import fill_placeholders, grounded, rewrite_prompt
from lmforge.apps.support._faq import FaqIndex
from lmforge.apps.support._layout import BOT_FORMAT, BOT_MANIFEST, FAQ, OOS_WEIGHTS, RUN
from lmforge.apps.support._models import Models, load_models
from lmforge.apps.support._oos import EMBEDDING_METHODS, Mahalanobis, Neighbours, oos_scores
from lmforge.apps.support._sessions import MemorySessions, SessionStore
from lmforge.errors import ConfigError, RunDirError
from lmforge.guard import trust_run
from lmforge.predict import Generator, Predictor, load_generator, load_predictor, softmax, unit_rows
from lmforge.rundir import RunDir

__all__ = ["REPLY_KEYS", "Bot", "Turn"]

REPLY_KEYS = ("text", "intent", "confidence", "out_of_scope", "answer", "escalate", "reason", "sources")
"""The keys of one reply, in order (the output contract)."""


@dataclass
class Turn:
    """One reply, plus what the evaluation and the benchmark read besides the contract."""

    text: str
    intent: str | None
    confidence: float
    out_of_scope: bool
    answer: str | None
    escalate: bool
    reason: str
    sources: list[dict[str, Any]]
    oos_score: float = 0.0
    """The score of the OOS method (higher: more in scope)."""
    predicted: str = ""
    """The classifier's top intent, flagged or not."""
    retrieved: str | None = None
    """The retrieved (filled) answer, before any rewrite."""
    rewrite: str | None = None
    """The generator's answer, grounded or not (None: no generator, or nothing to rewrite)."""
    turn: int | None = None
    """The turn's number in its session (1, 2, ...; None without a session id)."""
    extra: dict[str, Any] = field(default_factory=dict)

    def reply(self) -> dict[str, Any]:
        """The contract's JSON object."""
        return {key: getattr(self, key) for key in REPLY_KEYS}


def _read_manifest(folder: Path) -> dict[str, Any]:
    path = folder / BOT_MANIFEST
    if not path.is_file():
        raise RunDirError(f"{folder} is not a bot directory ({BOT_MANIFEST} is missing); make one with "
                          f"`lmforge bot build SPEC --out {folder}`.")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RunDirError(f"{path} is not valid JSON ({exc}); run `lmforge bot build` again.") from None
    if not isinstance(manifest, dict) or manifest.get("format") != BOT_FORMAT:
        raise RunDirError(f"{path} is not a bot manifest (format {BOT_FORMAT!r}); run `lmforge bot build` again.")
    return manifest


class Bot:
    """A built bot, loaded: ``ask`` answers turns; sessions (turn numbers, consecutive failures) live in
    :attr:`sessions`: this process's memory by default, the server's database under ``lmforge serve``."""

    def __init__(self, folder: Path, manifest: dict[str, Any], models: Models, detector: Mahalanobis | Neighbours | None,
                 faq: FaqIndex | None, generator: Generator | None, sentiment: Predictor | None) -> None:
        self.folder = folder
        self.manifest = manifest
        self.models = models
        self.detector = detector  # the embedding detector of an embedding method (EMBEDDING_METHODS), else None
        self.faq = faq
        self.generator = generator
        self.sentiment = sentiment
        self.cfg = manifest["bot"]
        self.labels: list[str] = list(manifest["labels"])
        self.method: str = manifest["oos"]["method"]
        self.threshold = float(manifest["oos"]["threshold"])
        self.sessions: SessionStore = MemorySessions()

    @classmethod
    def load(cls, folder: str | Path, *, public_key: str | Path | None = None, allow_unsigned: bool = False,
             method: str | None = None) -> Bot:
        """Load a bot directory; every run it uses (intent, generator, sentiment) is verified first
        (``lmforge.guard.trust_run``: signed, or only checked against its manifest with ``allow_unsigned``).

        ``method`` swaps in another OOS method calibrated at build time (its own threshold, same
        target), to compare methods on one bot; None: the one the build chose.
        """
        folder = Path(folder)
        manifest = _read_manifest(folder)
        if method is not None:
            calibrated = manifest["oos"]["methods"]
            if method not in calibrated:
                raise ConfigError(f"OOS method {method!r} was not calibrated for {folder}; calibrated: "
                                  f"{', '.join(calibrated)}.")
            manifest["oos"] = {**manifest["oos"], "method": method, "threshold": calibrated[method]["threshold"]}
        cfg = manifest["bot"]
        run = RunDir(folder / manifest.get("run", RUN))
        verified = trust_run(run, public_key, allow_unsigned=allow_unsigned)
        method = manifest["oos"]["method"]
        need = method in EMBEDDING_METHODS or manifest.get("faq") is not None
        models = load_models(run, manifest["classifier_variant"], embeddings=need, verified=verified,
                             embedder=manifest.get("embedder_variant"))
        detector: Mahalanobis | Neighbours | None = None
        if method in EMBEDDING_METHODS:
            st = require("safetensors.numpy", extra="train", purpose="Loading the bot")
            arrays = st.load_file(str(folder / OOS_WEIGHTS))
            detector = Mahalanobis.from_arrays(arrays) if method == "mahalanobis" else Neighbours.from_arrays(arrays)
        faq = FaqIndex.load(folder / FAQ) if manifest.get("faq") is not None else None
        generator = None
        if cfg["generator"]["run"]:
            gen_run = cfg["generator"]["run"]
            generator = load_generator(gen_run, verified=trust_run(gen_run, public_key, allow_unsigned=allow_unsigned))
        sentiment = None
        if cfg["sentiment"]["run"]:
            s_run = cfg["sentiment"]["run"]
            sentiment = load_predictor(s_run, verified=trust_run(s_run, public_key, allow_unsigned=allow_unsigned))
        return cls(folder, manifest, models, detector, faq, generator, sentiment)

    def reset(self) -> None:
        """Forget every session (of the in-memory store; a database's sessions are kept)."""
        if isinstance(self.sessions, MemorySessions):
            self.sessions.clear()

    def _sources(self, emb: np.ndarray, text: str, intent: str) -> tuple[list[dict[str, Any]], list[Any]]:
        """The top entries whose every slot can be filled, as sources, and the entries themselves."""
        faq_cfg, values = self.cfg["faq"], self.cfg["placeholders"]
        if self.faq is None:
            return [], []
        hits = self.faq.search(emb, text, float(faq_cfg["embedding_weight"]), len(self.faq.entries), intent)
        sources, entries = [], []
        for index, score in hits:
            entry = self.faq.entries[index]
            answer = fill_placeholders(entry.answer, values)
            question = fill_placeholders(entry.question, values) or entry.question
            if answer is None:
                continue
            sources.append({"question": question, "answer": answer, "score": round(score, 6)})
            entries.append(entry)
            if len(sources) == int(faq_cfg["top_k"]):
                break
        return sources, entries

    def _turn(self, text: str, proba: np.ndarray, score: float, emb: np.ndarray | None, angry: bool,
              session: str | None) -> Turn:
        esc = self.cfg["escalate"]
        top = int(proba.argmax())
        confidence, predicted = float(proba[top]), self.labels[top]
        oos = score < self.threshold
        intent = None if oos else predicted
        turn = Turn(text, intent, round(confidence, 6), bool(oos), None, False, "out_of_scope" if oos else "no_faq",
                    [], oos_score=score, predicted=predicted)
        turn.extra["scores"] = {label: float(p) for label, p in zip(self.labels, proba, strict=True)}
        if intent is not None and self.faq is not None and emb is not None:
            turn.sources, turn.extra["entries"] = self._sources(emb, text, intent)
            if turn.sources:
                turn.answer = turn.retrieved = turn.sources[0]["answer"]
                turn.reason = "answered"
            else:
                turn.escalate, turn.reason = True, "unfilled_placeholder"
        failed = oos or confidence < float(esc["min_confidence"])
        if session is not None:
            step = self.sessions.step(session, failed, int(esc["after_failures"] or 0))
            turn.turn = step.turn
            if step.escalate:
                turn.escalate, turn.reason = True, "repeated_failures"
        if angry:
            turn.escalate, turn.reason = True, "negative_sentiment"
        if intent is not None and intent in esc["intents"]:
            turn.escalate, turn.reason = True, "escalate_intent"
        return turn

    def _angry(self, texts: list[str]) -> list[bool]:
        if self.sentiment is None:
            return [False] * len(texts)
        cfg = self.cfg["sentiment"]
        proba = self.sentiment.predict_proba(texts)
        cols = [i for i, label in enumerate(self.sentiment.labels) if label in cfg["labels"]]
        return [bool(cols) and float(row[cols].max()) >= float(cfg["min_score"]) for row in proba]

    def _rewrite(self, turns: list[Turn]) -> None:
        """Replace each answer by the generator's rewrite when it is grounded in the entries it was shown."""
        todo = [t for t in turns if t.answer is not None and t.extra.get("entries")]
        if self.generator is None or not todo:
            return
        cfg = self.cfg["generator"]
        prompts = [rewrite_prompt(t.text, t.extra["entries"], [s["answer"] for s in t.sources]) for t in todo]
        outs = self.generator.generate(prompts, max_new_tokens=int(cfg["max_new_tokens"]))
        for turn, out in zip(todo, outs, strict=True):
            turn.rewrite = out.text.strip()
            texts = [s["answer"] for s in turn.sources] + [s["question"] for s in turn.sources]
            if turn.rewrite and grounded(turn.rewrite, texts, float(cfg["min_overlap"])):
                turn.answer, turn.reason = turn.rewrite, "rewritten" if turn.reason == "answered" else turn.reason
            elif turn.reason == "answered":
                turn.reason = "not_grounded"

    def turns(self, texts: Sequence[str], session_ids: Sequence[str | None] | None = None) -> list[Turn]:
        """Answer ``texts`` in order; turns with the same session id share a failure count."""
        texts = [str(t) for t in texts]
        if not texts:
            return []
        sessions = list(session_ids) if session_ids is not None else [None] * len(texts)
        need = self.method in EMBEDDING_METHODS or self.faq is not None
        logits, pooled = self.models.encode(texts, need_embeddings=need)
        scores = oos_scores(logits, pooled, {self.method: self.detector} if self.detector is not None else None)[self.method]
        proba = softmax(logits)
        embs = unit_rows(pooled) if pooled is not None else None
        angry = self._angry(texts)
        out = [self._turn(t, proba[i], float(scores[i]), None if embs is None else embs[i], angry[i], sessions[i])
               for i, t in enumerate(texts)]
        self._rewrite(out)
        return out

    def ask(self, texts: Sequence[str], session_ids: Sequence[str | None] | None = None) -> list[dict[str, Any]]:
        """The replies (the output contract) to ``texts``, in order."""
        return [t.reply() for t in self.turns(texts, session_ids)]
