"""How to cite the method. The OpenReview record lists the authors as anonymous."""

SPACL_CITATION = """
@inproceedings{spacl2026,
    title     = {SnaPhArd Contrast Learning},
    author    = {Anonymous},
    booktitle = {The Fourteenth International Conference on Learning Representations (ICLR 2026)},
    year      = {2026},
    url       = {https://openreview.net/forum?id=4cZvjp8Iwk},
    note      = {OpenReview id 4cZvjp8Iwk}
}
"""
