"""The setup scripts: the torch build they pick, and that no long step runs silently."""

from __future__ import annotations

import os
import re
import stat
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "scripts"


def _fake_bin(folder: Path, name: str, body: str) -> None:
    path = folder / name
    path.write_text(f"#!/usr/bin/env bash\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def _run(tmp_path: Path, call: str, *, gpu_tool: str | None = None, proc: bool = False,
         reachable: bool = False, extra_env: dict[str, str] | None = None
         ) -> subprocess.CompletedProcess[str]:
    """Source torch-build.sh and run ``call`` with a fake python (pip) and nvidia-smi."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    log = tmp_path / "pip.log"
    # The fake python: `python - URL` is the reachability probe, `python -m pip ...` is logged.
    probe = f'if [ "$1" = - ]; then cat >/dev/null; exit {0 if reachable else 1}; fi'
    _fake_bin(bin_dir, "python", f'{probe}\necho "$@" >> {log}')
    if gpu_tool is not None:
        _fake_bin(bin_dir, "nvidia-smi", gpu_tool)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path),
           "MCLIP_NVIDIA_PROC": str(tmp_path / ("nvidia-version" if proc else "absent"))}
    if proc:
        (tmp_path / "nvidia-version").write_text("NVRM version: 580\n")
    env.update(extra_env or {})
    done = subprocess.run(["bash", "-c", f". {SCRIPTS / 'torch-build.sh'} && {call}"], env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    done.pip = log.read_text() if log.exists() else ""  # type: ignore[attr-defined]
    return done


@pytest.mark.parametrize(("gpu_tool", "proc", "expected"), [
    (None, False, "cpu"),
    ("exit 9", False, "cpu"),  # nvidia-smi installed, but no GPU / no driver
    ("echo 'GPU 0: NVIDIA H200'", False, "cuda"),
    (None, True, "cuda"),
])
def test_the_build_follows_the_gpu(tmp_path: Path, gpu_tool: str | None, proc: bool,
                                   expected: str):
    done = _run(tmp_path, "torch_build", gpu_tool=gpu_tool, proc=proc)
    assert (done.returncode, done.stdout.strip()) == (0, expected), done.stderr


def test_an_explicit_choice_wins(tmp_path: Path):
    assert _run(tmp_path, "torch_build", proc=True,
                extra_env={"MCLIP_TORCH": "cpu"}).stdout.strip() == "cpu"
    bad = _run(tmp_path, "torch_build", extra_env={"MCLIP_TORCH": "rocm"})
    assert bad.returncode != 0 and "cpu or cuda" in bad.stderr


def test_no_gpu_installs_the_cpu_build_and_says_so(tmp_path: Path):
    done = _run(tmp_path, "install_torch torch==2.14.1 torchvision==0.29.1", reachable=True)
    assert done.returncode == 0, done.stderr
    assert "CPU build" in done.stdout and "no NVIDIA GPU" in done.stdout
    assert done.pip.split() == ["-m", "pip", "install", "--index-url",  # type: ignore[attr-defined]
                                "https://download.pytorch.org/whl/cpu", "torch==2.14.1",
                                "torchvision==0.29.1"]


def test_ci_never_probes_the_cpu_index(tmp_path: Path):
    # reachable=True: were the probe run, the CPU index would be chosen.
    done = _run(tmp_path, "install_torch torch==2.14.1", reachable=True,
                extra_env={"CI": "true"})
    assert done.returncode == 0, done.stderr
    assert "(CI)" in done.stdout and "CUDA build" in done.stdout
    assert done.pip.split() == ["-m", "pip", "install", "torch==2.14.1"]  # type: ignore[attr-defined]


def test_no_gpu_and_no_cpu_index_says_what_it_installs_instead(tmp_path: Path):
    done = _run(tmp_path, "install_torch torch==2.14.1", reachable=False)
    assert done.returncode == 0, done.stderr
    assert "cannot be reached" in done.stdout and "CUDA build" in done.stdout
    assert done.pip.split() == ["-m", "pip", "install", "torch==2.14.1"]  # type: ignore[attr-defined]


def test_a_gpu_gets_the_cuda_build(tmp_path: Path):
    done = _run(tmp_path, "install_torch torch==2.14.1", proc=True, reachable=True)
    assert "NVIDIA GPU found" in done.stdout and "CUDA build" in done.stdout
    assert "--index-url" not in done.pip  # type: ignore[attr-defined]


@pytest.mark.parametrize("script", ["setup.sh", "quickstart.sh"])
def test_every_slow_step_is_announced_and_shows_its_progress(script: str):
    lines = (SCRIPTS / script).read_text().splitlines()
    slow = re.compile(r"^\s*(python -m pip install|pip install|npm |mclip-explorer build|"
                      r"install_torch|\S*\s*\$sudo apt-get)")
    for number, line in enumerate(lines):
        if not slow.match(line):
            continue
        # Progress goes to the terminal: no quiet flags, no output thrown away.
        assert not re.search(r"(^|\s)(-q|-qq|--quiet|--silent)(\s|$)", line), line
        assert ">/dev/null" not in line, line
        before = "\n".join(lines[max(0, number - 4):number])
        assert "echo \"== " in before or "echo '== " in before or line.lstrip().startswith(
            "install_torch"), f"{script}:{number + 1} runs without saying what: {line}"


def test_the_scripts_parse():
    for script in ("setup.sh", "quickstart.sh", "test.sh", "torch-build.sh"):
        done = subprocess.run(["bash", "-n", str(SCRIPTS / script)], capture_output=True,
                              text=True, timeout=30, check=False, env=dict(os.environ))
        assert done.returncode == 0, done.stderr
