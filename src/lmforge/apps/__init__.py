"""Applications composed from the stages (support bot, sentiment watch, recommender); they add no stage logic."""

__all__: list[str] = []
