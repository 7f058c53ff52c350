"""Diagnostics from SPACL's theory (scipy): the convex-hull collapse check. Torch-only measures live in
``spacl_hf.core.diagnostics`` (alignment, uniformity, effective rank, weighted-negative parallelism)."""

from .collapse import collapse_report, positive_multiple_in_hull

__all__ = ["collapse_report", "positive_multiple_in_hull"]
