"""The bot directory (``lmforge bot build SPEC --out DIR``), the one place that names its files.

```
DIR/
  run/                the intent classifier: an ordinary run directory (lmforge run), signed by the CLI
  bot.json            the bot manifest: the bot spec, the variant used, the OOS method, threshold and
                      every method's validation numbers, the FAQ's size, the generator and sentiment runs
  oos.safetensors     the Mahalanobis detector (class means, shared precision), when it was fitted
  faq/                faq.json (entries), faq_embeddings.safetensors, faq_bm25.json  (with bot.faq.path)
  eval/               bot_metrics.json, bot_report.html  (lmforge bot eval)
```
"""

from __future__ import annotations

__all__ = ["BOT_FORMAT", "BOT_MANIFEST", "EVAL", "FAQ", "METRICS", "OOS_WEIGHTS", "REPORT", "RUN"]

RUN = "run"
BOT_MANIFEST = "bot.json"
BOT_FORMAT = "lmforge-bot"
OOS_WEIGHTS = "oos.safetensors"
FAQ = "faq"
EVAL = "eval"
METRICS = "bot_metrics.json"
REPORT = "bot_report.html"
