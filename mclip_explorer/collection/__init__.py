"""Collections: encoded image and text items in a persistent store, searchable and mapped.

Importing this package stays light (NumPy only); pandas, hnswlib and umap load on first use.
"""

from __future__ import annotations

from mclip_explorer.collection.core import Collection

__all__ = ["Collection"]
