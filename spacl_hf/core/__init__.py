"""The SPACL math in pure PyTorch: tensors in, loss out. Imports only torch and the standard library."""

from .anchor import dynamic_anchor, view_hardness
from .citation import SPACL_CITATION
from .columns import ACCEPTED_FORMATS, ColumnLayout, RunningStatistics, spacl_from_columns
from .criterion import SPACLCriterion
from .dist import Gather, TorchDistributedGather, all_gather_with_grad, get_rank, get_world_size
from .generator import AdversarialNegativeGenerator
from .loss import spacl_loss
from .positives import farthest_point_select, ordered_select
from .screening import relative_screen

__all__ = [
    "ACCEPTED_FORMATS",
    "SPACL_CITATION",
    "AdversarialNegativeGenerator",
    "ColumnLayout",
    "RunningStatistics",
    "Gather",
    "SPACLCriterion",
    "TorchDistributedGather",
    "all_gather_with_grad",
    "dynamic_anchor",
    "farthest_point_select",
    "get_rank",
    "get_world_size",
    "ordered_select",
    "relative_screen",
    "spacl_from_columns",
    "spacl_loss",
    "view_hardness",
]
