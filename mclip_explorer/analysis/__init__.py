"""Teaching and audit views of a collection's embedding space, as plain functions.

Every view takes a :class:`~mclip_explorer.Collection` and returns pandas frames, NumPy arrays or
a small frozen dataclass of both; each has an array-level core (``*_from_vectors``) that needs no
collection. Search here is exact, so the views measure the model, never the index. See
``docs/analysis.md``.
"""

from __future__ import annotations

from mclip_explorer.analysis.compare import ModelComparison, compare_models
from mclip_explorer.analysis.duplicates import duplicates_from_vectors, near_duplicates
from mclip_explorer.analysis.gap import ModalityGap, gap_from_vectors, modality_gap
from mclip_explorer.analysis.hubness import Hubness, hubness, hubness_from_vectors
from mclip_explorer.analysis.lanes import LanguageLanes, lanes_from_vectors, language_lanes
from mclip_explorer.analysis.outliers import outliers, outliers_from_vectors
from mclip_explorer.analysis.retrieval import RetrievalAudit, audit_from_vectors, retrieval_audit
from mclip_explorer.analysis.zeroshot import classify, zero_shot

__all__ = [
    "Hubness",
    "LanguageLanes",
    "ModalityGap",
    "ModelComparison",
    "RetrievalAudit",
    "audit_from_vectors",
    "classify",
    "compare_models",
    "duplicates_from_vectors",
    "gap_from_vectors",
    "hubness",
    "hubness_from_vectors",
    "language_lanes",
    "lanes_from_vectors",
    "modality_gap",
    "near_duplicates",
    "outliers",
    "outliers_from_vectors",
    "retrieval_audit",
    "zero_shot",
]
