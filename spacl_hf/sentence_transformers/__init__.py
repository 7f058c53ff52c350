"""sentence-transformers integration: ``SPACLLoss``, ``CachedSPACLLoss`` and a logging callback."""

from .cached_spacl_loss import CachedSPACLLoss
from .logging_callback import SPACLLoggingCallback, check_label_columns, describe_wrapped_loss
from .spacl_loss import ACCEPTED_FORMATS, SPACLLoss

__all__ = ["ACCEPTED_FORMATS", "CachedSPACLLoss", "SPACLLoggingCallback", "SPACLLoss", "check_label_columns", "describe_wrapped_loss"]
