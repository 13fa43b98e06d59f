"""Applications composed from the stages: each a package that adds no stage logic of its own
(``support``: the customer-service bot; ``recommend``: the text-aware recommender; ``watch``: the sentiment watch).

:func:`serving_for` tells ``lmforge serve`` which app (if any) a directory belongs to, and what to serve.
"""

from lmforge.apps._serving import SERVED_APPS, Served, serving_for

__all__ = ["SERVED_APPS", "Served", "serving_for"]
