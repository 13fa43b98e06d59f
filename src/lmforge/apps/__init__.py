"""Applications composed from the stages: each a package that adds no stage logic (``recommend``)."""

__all__: list[str] = []
