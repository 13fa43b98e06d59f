"""A text-aware recommender: interactions + item texts -> baselines, a two-tower text model, a blend.

- :func:`train_recommender` (``lmforge recommend train SPEC --out DIR``): :func:`prepare_data`
  reads and splits (``_data.py``, ``_split.py``), :func:`fit_models` fits popularity, ItemKNN,
  EASE, TF-IDF content and the text model (``_baselines.py``, ``_text.py``: the spec's encoder
  fine-tuned by :func:`lmforge.train.train_contrastive`) on the training split, fits the blend
  weights on validation (``_blend.py``) and refits; :func:`evaluate_models` alone reads the test
  split and writes ``DIR/eval/rec_metrics.json`` and ``report.html`` (``_metrics.py``: full ranking).
- :func:`recommend` and :func:`similar` answer from a trained directory (``_predict.py``).
- :func:`serving` (``lmforge serve DIR``): :class:`RecommendExtension` adds ``POST /v1/recommend``
  (``_serve.py``, ``_routes.py``), answered by :class:`OnlineRecommender` (``_online.py``: a known
  user, a new history, a text; the query encoder on ONNX int8, stored at train time by
  :func:`store_online`).

The directory layout is in ``_store.py``.
"""

from lmforge.apps.recommend._baselines import EASE, ItemKNN, Popularity, TfidfContent, interaction_matrix
from lmforge.apps.recommend._blend import Blend, fit_weights, simplex_grid, standardize
from lmforge.apps.recommend._data import Interactions, load_interactions
from lmforge.apps.recommend._evaluate import evaluate_models, train_recommender
from lmforge.apps.recommend._fit import Fitted, fit_models
from lmforge.apps.recommend._metrics import (
    METRIC_KS,
    by_user,
    evaluate_scores,
    ranking_metrics,
    tie_order,
    top_k,
)
from lmforge.apps.recommend._online import (
    MAX_ONLINE_ITEMS,
    Answer,
    OnlineRecommender,
    RecommendError,
    store_online,
)
from lmforge.apps.recommend._predict import Recommendations, recommend, similar
from lmforge.apps.recommend._prepare import Prepared, prepare_data, read_prepared
from lmforge.apps.recommend._serve import RecommendExtension, serving
from lmforge.apps.recommend._split import Splits, hold_out, make_splits
from lmforge.apps.recommend._store import RecDir
from lmforge.apps.recommend._text import (
    TextTower,
    history_text,
    history_windows,
    training_pairs,
    user_vectors,
)

__all__ = [
    "EASE",
    "MAX_ONLINE_ITEMS",
    "METRIC_KS",
    "Answer",
    "Blend",
    "Fitted",
    "Interactions",
    "ItemKNN",
    "OnlineRecommender",
    "Popularity",
    "Prepared",
    "RecDir",
    "RecommendError",
    "RecommendExtension",
    "Recommendations",
    "Splits",
    "TextTower",
    "TfidfContent",
    "by_user",
    "evaluate_models",
    "evaluate_scores",
    "fit_models",
    "fit_weights",
    "history_text",
    "history_windows",
    "hold_out",
    "interaction_matrix",
    "load_interactions",
    "make_splits",
    "prepare_data",
    "ranking_metrics",
    "read_prepared",
    "recommend",
    "serving",
    "similar",
    "simplex_grid",
    "standardize",
    "store_online",
    "tie_order",
    "top_k",
    "train_recommender",
    "training_pairs",
    "user_vectors",
]
