"""Applications composed from the stages (support bot, sentiment watch, recommender); they add no stage logic."""
