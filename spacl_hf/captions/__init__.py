"""Multi-view text: items with several texts (captions of one image, paraphrases of one question) grouped into
``view_0 .. view_{V-1}`` rows for SPACL, the Flickr30k / COCO / CxC loaders, and the retrieval and similarity
evaluators. Imports ``datasets``; evaluation is plain torch (scipy for Spearman).
"""

from .data import drop_overlapping, load_coco_captions, load_cxc, load_flickr30k, normalize_text
from .evaluation import evaluate_retrieval, evaluate_similarity, sibling_retrieval, similarity_spearman
from .views import group_views

__all__ = [
    "drop_overlapping",
    "evaluate_retrieval",
    "evaluate_similarity",
    "group_views",
    "load_coco_captions",
    "load_cxc",
    "load_flickr30k",
    "normalize_text",
    "sibling_retrieval",
    "similarity_spearman",
]
