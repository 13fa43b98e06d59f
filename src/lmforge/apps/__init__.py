"""Applications composed from the stages: each a package that adds no stage logic of its own
(``support``: the customer-service bot; ``recommend``: the text-aware recommender; ``watch``: the sentiment watch)."""

__all__: list[str] = []
