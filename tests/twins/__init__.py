"""Builders of tiny random-weight twins of every model family, in the hub repos' folder layouts.

Each module here exposes ``build(root: Path) -> None``, writing its repos under ``root/<hub-id>/``
(for example ``root/M-CLIP/M-BERT-Distil-40/``) and legacy head files under ``root/heads/``.
``tests/conftest.py`` runs every builder once per test session into one weights folder, so tests
load twins through ``load_model(name, weights_dir=...)`` exactly as users load real models.
"""
