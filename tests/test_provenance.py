"""summary.json's provenance: the user's command line, the git state of the
folder they ran from, versions and host; none of it decides a resume."""

import json
import platform
import shutil
import socket
import subprocess

import pytest
import torch

from conftest import TINY
from regbench import provenance, records, train

from test_train import interrupt_at

git = shutil.which("git")


def git_repo(path):
    """A repository at ``path`` with one commit of a tracked file; its HEAD."""
    path.mkdir(parents=True, exist_ok=True)
    run = lambda *a: subprocess.run(["git", *a], cwd=path, check=True, capture_output=True, text=True).stdout
    run("init", "-q")
    (path / "exp.py").write_text("lr = 0.1\n")
    run("add", "exp.py")
    run("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "first")
    return run("rev-parse", "HEAD").strip()


def as_user_ran(monkeypatch, cwd, *argv):
    monkeypatch.chdir(cwd)
    monkeypatch.delenv(provenance.ENV, raising=False)
    provenance.remember_invocation(list(argv))
    provenance.git_state.cache_clear()


@pytest.mark.slow
def test_the_cli_records_the_command_line_the_user_typed(cli, tmp_path):
    """joblib workers record the parent's command line, not their own argv."""
    sweep = tmp_path / "sweep"
    args = ["train", "-m", "seed=0,1", *TINY, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
            f"hydra.sweep.dir={sweep}", cli.data_arg]
    res = cli(*args, env={"GIT_CEILING_DIRECTORIES": str(tmp_path.parent)})  # tmp_path in no repository
    assert res.returncode == 0, res.stderr
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert len(jobs) == 2
    for job in jobs:
        prov = records.read_summary(job)["provenance"]
        assert prov["command"] == ["regbench", *args]
        assert prov["cwd"] == str(tmp_path)
        assert prov["git_commit"] is None and prov["git_dirty"] is None  # tmp_path is in no repository
        assert prov["python"] == platform.python_version() and prov["torch"] == torch.__version__
        assert prov["host"] == socket.gethostname()
        assert prov["cuda"] == torch.version.cuda and prov["device_name"] is None  # cpu


@pytest.mark.skipif(git is None, reason="git is not installed")
def test_git_commit_and_dirty_flag_of_the_folder_the_user_ran_from(make_cfg, tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    head = git_repo(repo)
    (repo / "sub").mkdir()
    (repo / "sub" / "outputs.txt").write_text("an untracked file\n")
    cfg = make_cfg()

    as_user_ran(monkeypatch, repo / "sub", "train", "model.dropout=0.1")  # a subfolder of the repository
    summary = train.run(cfg, tmp_path / "clean", show_progress=False)
    prov = summary["provenance"]
    assert prov["git_commit"] == head and prov["git_dirty"] is False  # untracked files (e.g. outputs/) do not count
    assert prov["command"] == ["regbench", "train", "model.dropout=0.1"]
    assert records.read_summary(tmp_path / "clean")["provenance"] == json.loads(json.dumps(prov))

    (repo / "exp.py").write_text("lr = 0.2\n")  # a tracked file changed
    as_user_ran(monkeypatch, repo, "train")
    assert train.run(cfg, tmp_path / "dirty", show_progress=False)["provenance"]["git_dirty"] is True

    outside = tmp_path / "outside"
    outside.mkdir()
    as_user_ran(monkeypatch, outside, "train")
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))  # the tmp folder may sit inside a repository
    prov = train.run(cfg, tmp_path / "norepo", show_progress=False)["provenance"]
    assert prov["git_commit"] is None and prov["git_dirty"] is None


def test_without_the_cli_the_process_command_line_is_recorded(monkeypatch, tmp_path):
    monkeypatch.delenv(provenance.ENV, raising=False)
    monkeypatch.setattr("sys.argv", ["script.py", "--x"])
    monkeypatch.chdir(tmp_path)
    assert provenance.invocation() == (["script.py", "--x"], str(tmp_path))


def test_no_git_is_no_commit(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # git cannot be found
    provenance.git_state.cache_clear()
    assert provenance.git_state(str(tmp_path)) == {"git_commit": None, "git_dirty": None}
    provenance.git_state.cache_clear()


def test_another_command_line_or_commit_still_resumes(make_cfg, tmp_path, monkeypatch):
    """Provenance is not config: the fingerprint that guards a resume ignores it,
    and the resumed summary keeps the earlier process's provenance."""
    cfg = make_cfg("trainer.epochs=5")
    as_user_ran(monkeypatch, tmp_path, "train", "first")
    interrupt_at(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        train.run(cfg, tmp_path / "job", show_progress=False)
    first = records.read_summary(tmp_path / "job")["provenance"]
    assert first["command"] == ["regbench", "train", "first"]

    as_user_ran(monkeypatch, tmp_path, "train", "second")
    monkeypatch.setattr(provenance, "git_state", lambda cwd: {"git_commit": "f" * 40, "git_dirty": True})
    summary = train.run(cfg, tmp_path / "job", show_progress=False)
    assert summary["status"] == "completed" and summary["resumed_after_epoch"] == 2
    assert summary["provenance"]["command"] == ["regbench", "train", "second"]
    assert summary["provenance"]["git_commit"] == "f" * 40
    assert summary["earlier_provenance"] == [first]


def test_relative_paths_are_taken_from_the_folder_the_command_was_typed_in(monkeypatch, tmp_path):
    from pathlib import Path

    from regbench import provenance, trackers

    monkeypatch.setattr(provenance, "launch_dir", lambda: str(tmp_path / "typed_here"))
    assert provenance.from_launch_dir("a/b.npz") == tmp_path / "typed_here" / "a" / "b.npz"
    assert provenance.from_launch_dir("/abs/b.npz") == Path("/abs/b.npz")
    assert provenance.from_launch_dir("~/b.npz") == Path.home() / "b.npz"
    assert trackers.mlflow_uri(None) == (tmp_path / "typed_here" / trackers.DEFAULT_MLFLOW_DIR).resolve().as_uri()
