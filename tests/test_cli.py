"""End to end: the real `regbench` CLI in a subprocess, as a user types it."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import TINY
from regbench import records

pytestmark = pytest.mark.slow


def job_dirs(root: Path) -> list[Path]:
    return records.find_job_dirs(root)


def test_train_default_dataset_writes_records(cli, tmp_path):
    res = cli("train", "trainer.epochs=2", cli.data_arg)
    assert res.returncode == 0, res.stderr
    (job,) = job_dirs(tmp_path / "outputs" / "runs")
    assert str(job.relative_to(tmp_path)) in res.stdout  # says where the records are
    summary = records.read_summary(job)
    assert summary["status"] == "completed" and summary["data"]["name"] == "mnist1d"
    assert summary["overrides"][0] == "trainer.epochs=2"
    assert (job / ".hydra" / "config.yaml").exists() and (job / "train.log").exists()
    lines = (job / records.METRICS_FILE).read_text().splitlines()
    assert len(lines) == 1 + 3  # header + epochs 0..2
    assert "epoch 2/2" in (job / "train.log").read_text()
    # the closing line: the value at the epoch the report reads, then the last (it printed the last beside "best ... epoch N")
    best, final = summary["best"], summary["final"]
    assert (f"completed after 2 epochs in {summary['wall_time_s']:.1f} s: val_acc {100 * best['val_acc']:.1f}% at epoch "
            f"{best['epoch']}, the epoch of lowest val_loss ({100 * final['val_acc']:.1f}% at the last)") in res.stdout + res.stderr
    # and what to type next, as a sweep says it (the path absolute, quoted for the shell)
    assert res.stdout.rstrip().splitlines()[-1] == f"next: regbench report {job.resolve()}"


def test_the_closing_line_of_replicas_says_whose_values_it_gives(cli, tmp_path):
    """trainer.replicas=3 seed=5 ended with seed 5's val_acc alone, read as the run's."""
    res = cli("train", "trainer.epochs=1", "trainer.replicas=2", "seed=5", cli.data_arg)
    assert res.returncode == 0, res.stderr
    (job,) = job_dirs(tmp_path / "outputs" / "runs")
    best = records.read_summary(job)["best"]
    assert (f"{100 * best['val_acc']:.1f}% at epoch {best['epoch']}, the epoch of lowest val_loss (") in res.stdout + res.stderr
    assert "at the last), of seed 5 (of 2 seeds; each seed's in summary.json's per_seed); records in" in res.stdout + res.stderr


def test_multirun_sweep_gives_each_job_its_records(cli, tmp_path):
    res = cli("train", "-m", "model.dropout=0,0.5", "model.batchnorm=false,true", *TINY, cli.data_arg)
    assert res.returncode == 0, res.stderr
    jobs = job_dirs(tmp_path / "outputs" / "multirun")
    assert len(jobs) == 4
    seen = set()
    for job in jobs:
        s = records.read_summary(job)
        assert s["status"] == "completed" and s["epochs_completed"] == 2
        seen.add((s["config"]["model.dropout"], s["config"]["model.batchnorm"]))
    assert seen == {(0.0, False), (0.0, True), (0.5, False), (0.5, True)}


def test_bad_value_is_one_line_and_exit_2(cli, tmp_path):
    res = cli("train", "model.dropout=1.5", *TINY, cli.data_arg)
    assert res.returncode == 2
    assert res.stderr.strip() == "regbench train: error: model.dropout=1.5 is not allowed: must be in [0, 1) (probability of dropping a unit)"
    assert "Traceback" not in res.stderr + res.stdout
    assert not job_dirs(tmp_path)


def test_missing_offline_dataset_is_one_line(cli, tmp_path):
    res = cli("train", "data=mnist", f"data.root={tmp_path / 'empty'}", "data.download=false")
    assert res.returncode == 2
    assert res.stderr.startswith("regbench train: error: data=mnist: dataset not found in ")
    assert len(res.stderr.strip().splitlines()) == 1


def test_a_sweep_on_a_set_it_cannot_download_is_one_line_before_any_folder(cli, tmp_path):
    """Offline, with the default data.download=true: the sweep is refused in one
    line naming the server it could not reach, and no folder is made. Each
    job used to make its folder and fail with the same error. The set's
    server is pointed at a closed local port (a sitecustomize in the child)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        f"import regbench.config as c\nc.DOWNLOAD_URLS['mnist'] = ('http://127.0.0.1:{port}/mnist/',)\n")
    env = {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]), "http_proxy": "", "HTTP_PROXY": ""}
    res = cli("train", "-m", "data=mnist", "seed=0,1", f"data.root={tmp_path / 'empty'}", "hydra.sweep.dir=sw", env=env)
    assert res.returncode == 2, res.stdout + res.stderr
    assert res.stderr.startswith(f"regbench train: error: data=mnist: dataset not found in {tmp_path / 'empty'}/MNIST/raw "
                                 f"and it cannot be downloaded: 127.0.0.1: "), res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "sw").exists() and not (tmp_path / "empty").exists()


def test_typo_in_key_fails_before_running(cli, tmp_path):
    res = cli("train", "model.dropuot=0.1", *TINY, cli.data_arg)
    assert res.returncode == 2
    assert res.stderr.startswith("regbench train: error: model.dropuot is not a config key; keys there: widths,")
    assert len(res.stderr.strip().splitlines()) == 1
    assert not job_dirs(tmp_path)


def test_cfg_job_help_and_version(cli):
    res = cli("train", "--cfg", "job", "model.dropout=0.3")
    assert res.returncode == 0 and "dropout: 0.3" in res.stdout and "name: mnist1d" in res.stdout
    res = cli("train", "--help")
    assert res.returncode == 0 and "regbench train" in res.stdout
    for group in ("data:", "model:", "optim:"):
        assert group in res.stdout
    assert "digits" in res.stdout and "adamw" in res.stdout
    res = cli("--help")
    assert res.returncode == 0 and "train" in res.stdout and "report" in res.stdout
    for argv in (["--version"], ["train", "--version"]):  # regbench's version, not Hydra's
        res = cli(*argv)
        assert res.returncode == 0 and res.stdout.startswith("regbench 0.") and "hydra-core 1." in res.stdout
    res = cli("fly")
    assert res.returncode == 2 and "unknown command 'fly'" in res.stderr


@pytest.mark.parametrize(
    "line,expected",
    [
        ("regbench train model.dro", "model.dropout="),
        ("regbench train data=di", "data=digits"),
        ("regbench train optim=", "optim=adamw"),
        ("regbench tr", "train"),
    ],
)
def test_bash_completion(cli, line, expected):
    res = cli("-sc", "query=bash", env={"COMP_LINE": line, "COMP_POINT": str(len(line))})
    assert res.returncode == 0, res.stderr
    assert expected in res.stdout.split()


def test_completion_install_script_names_regbench(cli):
    res = cli("train", "-sc", "install=bash")
    assert res.returncode == 0 and "hydra_bash_completion" in res.stdout


def test_wheel_install_finds_its_configs(tmp_path):
    """A non-editable install, run from elsewhere, still finds conf/ (shipped as regbench.conf)."""
    repo = Path(__file__).resolve().parents[1]
    dist, site, elsewhere = tmp_path / "dist", tmp_path / "site", tmp_path / "elsewhere"
    elsewhere.mkdir()
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    subprocess.run(pip + ["wheel", "--no-deps", "--no-build-isolation", "-w", str(dist), str(repo)], check=True, capture_output=True)
    (wheel,) = dist.glob("regbench-*.whl")
    subprocess.run(pip + ["install", "--no-deps", "--target", str(site), str(wheel)], check=True, capture_output=True)
    env = {"PYTHONPATH": str(site)}
    from conftest import run_cli

    res = run_cli("train", "--cfg", "job", "data=digits", "optim=sgd", cwd=elsewhere, env=env)
    assert res.returncode == 0, res.stderr
    assert "name: digits" in res.stdout and "name: sgd" in res.stdout
    where = subprocess.run([sys.executable, "-c", "import regbench; print(regbench.__file__)"], cwd=elsewhere, env={**__import__("os").environ, **env}, capture_output=True, text=True)
    assert where.stdout.startswith(str(site))


def test_replica_sweep_reports_like_separate_runs(cli, tmp_path):
    """trainer.replicas=2 writes per-seed records the report cannot tell from separate runs."""
    stacked, separate = tmp_path / "stacked", tmp_path / "separate"
    common = ["train", "-m", "model.dropout=0,0.5", *TINY, cli.data_arg]
    assert cli(*common, "trainer.replicas=2", f"hydra.sweep.dir={stacked}").returncode == 0
    assert cli(*common, "seed=0,1", f"hydra.sweep.dir={separate}").returncode == 0
    assert len(job_dirs(stacked)) == 2 and len(job_dirs(separate)) == 4
    for folder in (stacked, separate):
        res = cli("report", str(folder), "-o", str(folder / "report"), "--formats", "png")
        assert res.returncode == 0, res.stderr
        assert res.stdout.startswith("4 runs in 2 cells (dropout)"), res.stdout
    import pandas as pd

    a = pd.read_csv(stacked / "report" / "cells.csv")
    b = pd.read_csv(separate / "report" / "cells.csv")
    assert list(a.columns) == list(b.columns) and len(a) == len(b) == 2


def test_refused_commands_leave_earlier_records_alone(cli, tmp_path):
    run_dir = tmp_path / "run"
    assert cli("train", *TINY, cli.data_arg, f"hydra.run.dir={run_dir}").returncode == 0
    before = {p.name: p.read_bytes() for p in (run_dir / ".hydra").iterdir()}
    for bad in ("model.dropout=0.3", "model.dropout=2"):  # another config; a value out of range
        res = cli("train", *TINY, cli.data_arg, f"hydra.run.dir={run_dir}", bad)
        assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert {p.name: p.read_bytes() for p in (run_dir / ".hydra").iterdir()} == before
    # a sweep with one bad value is refused before any job trains
    res = cli("train", "-m", "model.dropout=0,1.0", "seed=0,1", *TINY, cli.data_arg, f"hydra.sweep.dir={tmp_path / 'sweep'}")
    assert res.returncode == 2 and "(job model.dropout=1.0," in res.stderr
    assert not (tmp_path / "sweep").exists()


def test_a_command_freezes_its_objects_before_python_exits(tmp_path):
    """Python's last collections would walk every object the command made
    (a sweep process's configs: 0.1-0.15 s of a 12-run sweep); the command
    freezes them as it exits, so the process ends at once."""
    code = (
        "import atexit, gc\n"
        "atexit.register(lambda: print('frozen:', gc.get_freeze_count() > 0))  # runs after the command's own\n"
        "from regbench.cli import main\n"
        "main(['--version'])\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == "frozen: True", proc.stdout


def test_commands_that_do_not_train_never_import_torch(tmp_path):
    """--help, train --help, --cfg, tab completion, plan and status answer in
    well under a second because they never import torch (about 1-3 s alone)."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    records.write_summary(run_dir, {"status": "completed", "config": {"trainer.epochs": 2}, "epochs_completed": 2})
    code = f"""
import contextlib, io, os, sys
from regbench.cli import main
calls = [["--help"], ["train", "--help"], ["train", "--cfg", "job", "model.dropout=0.3"],
         ["plan", "model.dropout=0,0.5", "hydra.sweep.dir={tmp_path / 'sweep'}"], ["status", {str(run_dir)!r}],
         ["export", "--help"], ["train", "--cfg", "job", "logger=[tensorboard,mlflow]"]]
for argv in calls:
    with contextlib.redirect_stdout(io.StringIO()) as out:
        try:
            code = main(argv)
        except SystemExit as exc:  # Hydra ends --help with sys.exit(0)
            code = exc.code
    assert code == 0 and out.getvalue(), (argv, code)
os.environ["COMP_LINE"] = "regbench train model.dro"
with contextlib.redirect_stdout(io.StringIO()) as out:
    main(["-sc", "query=bash"])
assert "model.dropout=" in out.getvalue(), out.getvalue()
print(sorted(m for m in sys.modules if m == "torch" or m.startswith("torch.")))
assert "torch" not in sys.modules
assert not any(m.split(".")[0] in ("mlflow", "tensorboard") for m in sys.modules)  # trackers load only when used
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == "[]"


@pytest.mark.parametrize("argv,message", [
    (["--resolve"], "The --resolve flag can only be used in conjunction with --cfg or --help"),
    (["-m", "--cfg", "hydra"], "Only one of --run, --multirun, --cfg, --info and --shell_completion can be specified"),
    (["--shell-completion"], "--shell-completion needs install=SHELL, uninstall=SHELL or query=SHELL"),
])
def test_hydra_flag_mistakes_are_one_line(cli, tmp_path, argv, message):
    """Hydra's own checks of its flags raised ValueError past regbench: a 20-line traceback."""
    res = cli("train", *argv)
    assert res.returncode == 2 and res.stderr.startswith(f"regbench train: error: {message}"), res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and not job_dirs(tmp_path)


def test_a_jobs_value_error_that_hydra_re_raises_keeps_its_traceback(monkeypatch, tmp_path):
    """With HYDRA_FULL_ERROR=1 Hydra re-raises a job's error: it is not made into a one-line flag error."""
    from regbench import cli, train

    def broken(cfg):
        raise ValueError("a bug deep in training")

    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    monkeypatch.setattr(train, "main", broken)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="a bug deep in training"):
        cli.main(["train", "data=blobs", "data.n_samples=300", "trainer.epochs=1", "hydra.run.dir=run"])


def test_on_a_terminal_the_bar_comes_after_the_runs_opening_line(tmp_path, data_root):
    """On a terminal (stdout and stderr a pty), tqdm's bar over epochs. It was
    drawn before the run's opening line (what trains, where its records go),
    which then split it and left a stale 0% bar above the live one."""
    import fcntl
    import pty
    import select
    import struct
    import termios
    import time

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))  # rows, columns: a bar needs a width
    proc = subprocess.Popen([sys.executable, "-m", "regbench", "train", *TINY, f"data.root={data_root}", f"hydra.run.dir={tmp_path / 'r'}"],
                            cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave)
    os.close(slave)
    out, deadline = b"", time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            if not select.select([master], [], [], 1)[0]:
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the process closed the terminal
                break
            if not chunk:
                break
            out += chunk
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
    assert proc.wait(timeout=30) == 0, out
    text = out.decode(errors="replace")
    opening = text.index("parameters; records in")
    assert " epochs |" in text and text.index(" epochs |") > opening, text
    # the bar's label leaves it room on a 120-column terminal: a quarter of the width at most, val_acc first
    bar = [line for line in text.replace("\r", "\n").splitlines() if " epochs |" in line][-1]
    assert len(bar.split(": ")[0]) <= 30 and ", val_acc=" in bar and bar.index("val_acc=") < bar.index("loss="), bar


@pytest.mark.parametrize("args", [["status", "{long}"], ["report", "{long}"], ["export", "{long}", "--to", "tensorboard"],
                                  ["plan", "hydra.sweep.dir={long}"], ["train", "-m", "seed=0,1", "hydra.sweep.dir={long}"]],
                         ids=["status", "report", "export", "plan", "train-m"])
def test_a_name_past_the_file_systems_limit_is_one_line(cli, tmp_path, args):
    """A folder name of 300 bytes: each command raised OSError (File name too long) with a 25-34 line traceback."""
    long = str(tmp_path / ("x" * 300))
    res = cli(*[a.format(long=long) for a in args], *(TINY + [cli.data_arg] if args[0] in ("train", "plan") else []))
    assert res.returncode == 2, res.stderr[-2000:]
    assert res.stderr.count("\n") == 1 and "a name in it is longer than the file system allows" in res.stderr, res.stderr


def test_a_config_flag_naming_nothing_is_one_line(capsys, tmp_path):
    """Hydra answered -cn nope and -cd /nonexist in several lines (HYDRA_FULL_ERROR...) with exit status 1."""
    from regbench import cli

    (tmp_path / "mine.yaml").write_text("defaults:\n  - config\n")
    for argv, says in ((["-cn", "nope"], "-cn nope: no config nope.yaml in regbench's configs (its primary config is config)"),
                       (["--config-name=nope.yaml"], "-cn nope.yaml: no config nope.yaml in regbench's configs"),
                       (["-cd", str(tmp_path / "no")], f"-cd {tmp_path / 'no'}: no such folder"),
                       (["-cd", str(tmp_path), "-cn", "other"], f"-cn other: no config other.yaml in {tmp_path} or in "
                                                                "regbench's configs")):
        assert cli.main(["train", *argv]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"regbench train: error: {says}") and err.count("\n") == 1, (argv, err)
    assert cli._config_flag_refusal(["-cd", str(tmp_path), "-cn", "mine"]) is None
    assert cli._config_flag_refusal(["-cn", "config"]) is None
