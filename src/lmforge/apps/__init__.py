"""Applications composed from the stages: each a package that adds no stage logic of its own
(``support``: the customer-service bot; ``recommend``: the text-aware recommender)."""

__all__: list[str] = []
