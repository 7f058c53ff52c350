"""Diagnostics from SPACL's theory: the convex-hull collapse check (scipy) and a TrainerCallback that logs embedding
health every N steps. Torch-only measures live in ``spacl_hf.core.diagnostics``."""

from .callback import SPACLDiagnosticsCallback, probe_diagnostics, sentence_transformer_probe
from .collapse import collapse_report, positive_multiple_in_hull

__all__ = [
    "SPACLDiagnosticsCallback",
    "collapse_report",
    "positive_multiple_in_hull",
    "probe_diagnostics",
    "sentence_transformer_probe",
]
