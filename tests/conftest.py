"""Shared fixtures: offline hub settings, tiny model twins built once per session, toy encoder."""

from __future__ import annotations

import importlib
import os
import pkgutil
from pathlib import Path

import pytest

# No test may reach a hub; set before transformers / huggingface_hub are imported anywhere.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def weights_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A weights folder holding a tiny twin of every registry model, in hub layouts."""
    import tests.twins as twins

    root = tmp_path_factory.mktemp("weights")
    for module in pkgutil.iter_modules(twins.__path__):
        importlib.import_module(f"tests.twins.{module.name}").build(root)
    return root


@pytest.fixture(scope="session")
def toy_encoder():
    """The built-in toy colour encoder (no torch, no weights)."""
    from mclip_explorer.models.toy import ToyEncoder

    return ToyEncoder()


@pytest.fixture(scope="session")
def ray_cluster():
    """One local Ray cluster (2 CPUs) for the whole test session; yields its address."""
    ray = pytest.importorskip("ray", reason="the ray extra is not installed")
    # A loaded machine starts the raylet's agents slowly; the default wait (30 s) is too short.
    os.environ.setdefault("RAY_raylet_start_wait_time_s", "120")
    root = str(Path(__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    for attempt in range(3):  # ray.init gives the raylet a fixed 30 s to register
        try:
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                     runtime_env={"env_vars": {"PYTHONPATH": path}})
            break
        except Exception:
            ray.shutdown()
            if attempt == 2:
                raise
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()
