"""glintru: GLINT-RU and its baselines for sequential recommendation, with search on Ray."""

__version__ = "0.1.0"
