"""Where weights come from when they are not local."""

from __future__ import annotations

from pathlib import Path

import pytest


def test_hub_download_skips_other_frameworks_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub

    from mclip_explorer.models import st_clip

    seen: dict[str, object] = {}

    def fake_snapshot_download(repo: str, **kwargs: object) -> str:
        seen.update(repo=repo, **kwargs)
        return str(tmp_path)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    assert st_clip.local_repo("org/not-local", None, tmp_path / "empty") == tmp_path
    assert seen["repo"] == "org/not-local"
    assert "onnx/*" in seen["ignore_patterns"]  # type: ignore[operator]
