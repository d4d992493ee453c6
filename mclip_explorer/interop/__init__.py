"""Other tools' formats: readers and writers over plain arrays and tables.

This layer never imports :mod:`mclip_explorer.collection`; ``Collection.from_embeddings`` and
``Collection.export`` hand it arrays and DataFrames and write through the collection's atomic
writes. Modules: :mod:`.embeddings` (what an import yields, tables and DataFrames),
:mod:`.clip_retrieval` (its output folder), :mod:`.atlas` (Embedding Atlas parquet),
:mod:`.html` (one offline HTML file), :mod:`.fiftyone` (optional), :mod:`.png` (a static map).
"""
