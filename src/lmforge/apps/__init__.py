"""Applications composed from the stages: each trains its models as a ``pipeline`` run and adds
no stage logic of its own (``support``: the customer-service bot)."""

__all__: list[str] = []
