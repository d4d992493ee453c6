"""The bundled sample collection: 308 public-domain clip-art images from Debian's openclipart-png.

Images live in ``sample/<category>/[<subcategory>/]<name>.webp`` (at most 256 px, on white); a
folder build of :func:`sample_images` gets ``title`` from the file names and ``folder`` from the
categories. ``make_sample.py`` in this folder rebuilds them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

SAMPLE = Path(__file__).parent / "sample"


def sample_images() -> Path:
    """Folder of the sample images, ready for ``Collection.build`` or ``mclip-explorer build``."""
    if not SAMPLE.is_dir():
        from mclip_explorer.errors import SourceError

        raise SourceError(f"sample images missing from the installation: {SAMPLE}")
    return SAMPLE


def sample_table() -> pd.DataFrame:
    """The sample as a DataFrame source: ``path``, ``title``, ``category``, ``subcategory``."""
    import pandas as pd

    from mclip_explorer.collection.sources import title_from_name

    root = sample_images()
    files = sorted(root.rglob("*.webp"), key=lambda p: p.relative_to(root).as_posix())
    parts = [p.relative_to(root).parts for p in files]
    return pd.DataFrame({
        "path": [str(p) for p in files],
        "title": [title_from_name(p) for p in files],
        "category": [part[0] for part in parts],
        "subcategory": [part[1] if len(part) > 2 else "" for part in parts],
    })
