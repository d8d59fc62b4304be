"""Nothing breaks ugly before training starts: every bad command line below is
refused by the real CLI with one line on stderr naming what is wrong, exit code
2, no traceback, nothing written, and the records already in the folder left
byte for byte as they were.

Read-only folders: root ignores mode bits, so as root a folder is made
read-only with a read-only bind mount (skipped where mounting is not allowed);
as another user, with chmod.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

from conftest import TINY, run_cli
from regbench import records

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------ helpers


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every path under ``root``, with the bytes of each file (None for a folder)."""
    out: dict[str, bytes | None] = {}
    for folder, dirs, files in os.walk(root):
        for d in dirs:
            out[os.path.relpath(os.path.join(folder, d), root)] = None
        for f in files:
            p = os.path.join(folder, f)
            out[os.path.relpath(p, root)] = Path(p).read_bytes()
    return out


def assert_refused(res: subprocess.CompletedProcess, *fragments: str) -> str:
    assert res.returncode == 2, f"exit {res.returncode}\nstdout: {res.stdout}\nstderr: {res.stderr}"
    assert "Traceback" not in res.stdout + res.stderr, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    line = lines[0]
    assert line.startswith("regbench train: error: "), line
    for fragment in fragments:
        assert fragment in line, line
    return line


@contextmanager
def read_only(folder: Path):
    """``folder`` (which exists) read-only while the block runs."""
    if os.geteuid() != 0:
        modes = {p: p.stat().st_mode for p in [folder, *folder.rglob("*")]}
        for p in modes:
            p.chmod(0o555 if p.is_dir() else 0o444)
        try:
            yield
        finally:
            for p, mode in modes.items():
                p.chmod(mode)
        return
    if shutil.which("mount") is None or shutil.which("umount") is None:
        pytest.skip("running as root (mode bits do not stop root) and there is no mount command to make a read-only folder")
    bind = subprocess.run(["mount", "--bind", str(folder), str(folder)], capture_output=True, text=True)
    if bind.returncode != 0:
        pytest.skip(f"running as root and cannot bind-mount a read-only folder here: {bind.stderr.strip()}")
    try:
        ro = subprocess.run(["mount", "-o", "remount,bind,ro", str(folder)], capture_output=True, text=True)
        if ro.returncode != 0:
            pytest.skip(f"cannot remount a bind mount read-only here: {ro.stderr.strip()}")
        probe = folder / ".probe"
        try:
            probe.mkdir()
        except OSError:
            pass
        else:
            probe.rmdir()
            pytest.skip("a read-only bind mount is still writable here")
        yield
    finally:
        subprocess.run(["umount", str(folder)], capture_output=True)


@pytest.fixture(scope="module")
def earlier_run(tmp_path_factory, data_root) -> Path:
    """One real run's records (made once), copied into each test that needs them."""
    run_dir = tmp_path_factory.mktemp("earlier") / "run"
    res = run_cli("train", *TINY, f"data.root={data_root}", f"hydra.run.dir={run_dir}", cwd=run_dir.parent)
    assert res.returncode == 0, res.stderr
    return run_dir


@pytest.fixture
def run_copy(tmp_path, earlier_run) -> Path:
    dest = tmp_path / "run"
    shutil.copytree(earlier_run, dest)
    return dest


# ------------------------------------------------- H4: folders before training


def test_read_only_folder_for_a_new_run_or_sweep(cli, tmp_path, run_copy):
    ro = tmp_path / "ro"
    ro.mkdir()
    before = snapshot(tmp_path)
    with read_only(ro):
        res = cli("train", *TINY, cli.data_arg, f"hydra.run.dir={ro / 'new'}")
        assert_refused(res, f"hydra.run.dir={ro / 'new'} cannot take the records: {ro} is ", "choose a writable folder")
        res = cli("train", "-m", "model.dropout=0,0.1", *TINY, cli.data_arg, f"hydra.sweep.dir={ro / 'x'}")
        assert_refused(res, f"hydra.sweep.dir={ro / 'x'} cannot take the records: {ro} is ")
    assert snapshot(tmp_path) == before


def test_read_only_existing_run_folder_keeps_its_records(cli, tmp_path, run_copy):
    before = snapshot(tmp_path)
    with read_only(run_copy):
        # the same config (would be skipped as done) and a resumable one: Hydra would write .hydra/ and train.log first
        for extra in ([], ["trainer.epochs=3"]):
            res = cli("train", *TINY, cli.data_arg, f"hydra.run.dir={run_copy}", *extra)
            assert_refused(res, f"hydra.run.dir={run_copy} cannot take the records: {run_copy} is ")
    assert snapshot(tmp_path) == before


def test_read_only_sweep_folder_or_job_folder_with_an_earlier_job(cli, tmp_path, earlier_run):
    from regbench.preflight import _job_folders, check, reset

    sweep = tmp_path / "sweep"
    args = ["-m", "model.dropout=0,0.1", *TINY, cli.data_arg, f"hydra.sweep.dir={sweep}"]
    base, jobs = check(args)
    job = _job_folders(base, jobs)[0]  # where this sweep's first job keeps its records
    reset()
    shutil.copytree(earlier_run, job)
    before = snapshot(tmp_path)
    with read_only(sweep):
        assert_refused(cli("train", *args), f"hydra.sweep.dir={sweep} cannot take the records: {sweep} is ")
    with read_only(job):
        assert_refused(cli("train", *args), f"the job folder {job} cannot take the records: {job} is ",
                       "or choose another hydra.sweep.dir")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize(
    "args,fragment",
    [
        (["hydra.run.dir=/dev/null"], "hydra.run.dir=/dev/null cannot take the records: /dev/null exists and is not a folder"),
        (["hydra.run.dir=run/summary.json/x"], "summary.json exists and is not a folder"),
        (["hydra.run.dir="], "hydra.run.dir='' is not allowed: an empty folder would put the records into the current folder"),
        (["-m", "model.dropout=0,0.1", "hydra.sweep.dir="], "hydra.sweep.dir='' is not allowed"),
        (["-m", "model.dropout=0,0.1", "hydra.sweep.dir=/dev/null"], "hydra.sweep.dir=/dev/null cannot take the records"),
    ],
    ids=["dev-null", "under-a-file", "empty-run-dir", "empty-sweep-dir", "sweep-dir-a-file"],
)
def test_a_run_or_sweep_folder_that_cannot_be_one(cli, tmp_path, run_copy, args, fragment):
    if "/dev/null" in " ".join(args) and not os.path.exists("/dev/null"):
        pytest.skip("no /dev/null")
    before = snapshot(tmp_path)  # the current folder too: an empty run dir would write here
    assert_refused(cli("train", *TINY, cli.data_arg, *args), fragment)
    assert snapshot(tmp_path) == before


def test_a_folder_of_other_files_is_not_taken_for_a_run_or_a_sweep(cli, tmp_path):
    """hydra.run.dir=/ wrote a run into /, and a folder's own metrics.csv was set aside as damaged records."""
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "notes.txt").write_text("mine")
    (theirs / "metrics.csv").write_text("a,b\n")
    before = snapshot(tmp_path)
    assert_refused(cli("train", *TINY, cli.data_arg, f"hydra.run.dir={theirs}"),
                   f"hydra.run.dir={theirs} holds files that are not a regbench run (no .hydra/ or summary.json): "
                   "metrics.csv, notes.txt; give a new or empty folder")
    assert_refused(cli("train", "-m", "seed=0,1", *TINY, cli.data_arg, f"hydra.sweep.dir={theirs}"),
                   "holds files that are not a regbench sweep (no sweep.json or multirun.yaml)")
    assert snapshot(tmp_path) == before


def test_a_sweeps_folder_given_to_a_single_run_is_named_as_such():
    """It said "holds files that are not a regbench run" and listed the sweep's job folders."""
    import tempfile

    from regbench.preflight import foreign_folder_refusal

    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "multirun.yaml").write_text("{}")
        (Path(d) / "model.dropout=0").mkdir()
        assert foreign_folder_refusal("hydra.run.dir", d).startswith(
            f"hydra.run.dir={d} is a sweep's folder (it holds multirun.yaml): a single run needs a folder of its own")
        assert foreign_folder_refusal("hydra.sweep.dir", d, sweep=True) is None


@pytest.mark.parametrize(
    "args,fragment",
    [
        (["optim.lr=inf"], "optim.lr=inf is not allowed: must be a finite number"),
        (["optim.weight_decay=nan"], "optim.weight_decay=nan is not allowed: must be a finite number"),
        (["trainer.grad_clip=nan"], "trainer.grad_clip=nan is not allowed: must be a finite number"),
        (["model.bn_eps=inf"], "model.bn_eps=inf is not allowed: must be a finite number"),
        (["-m", "seed=0,1", "hydra/launcher=joblib", "hydra.launcher.n_jobs=0"], "hydra.launcher.n_jobs=0 is not allowed"),
        (["-m", "seed=0,1", "hydra.launcher.processes=0"], "hydra.launcher.processes=0 is not allowed: an integer >= 1"),
        (["-m", "seed=0,1", "hydra.launcher.max_replicas=0"], "hydra.launcher.max_replicas=0 is not allowed"),
        (["-m", "seed=0,1", "hydra.launcher.memory_budget_gb=-1"], "hydra.launcher.memory_budget_gb=-1.0 is not allowed"),
    ],
    ids=["lr-inf", "decay-nan", "clip-nan", "eps-inf", "joblib-0", "processes-0", "replicas-0", "budget-neg"],
)
def test_non_finite_values_and_launcher_settings_that_would_crash_or_mislead(cli, tmp_path, args, fragment):
    before = snapshot(tmp_path)
    assert_refused(cli("train", *TINY, cli.data_arg, "hydra.run.dir=run", "hydra.sweep.dir=sweep", *args), fragment)
    assert snapshot(tmp_path) == before


def test_an_infinite_divergence_threshold_or_save_interval_is_still_allowed(make_cfg):
    from regbench.config import ConfigError, validate
    validate(make_cfg("trainer.diverge_loss=inf"))  # only NaN/inf losses diverge
    validate(make_cfg("trainer.save_every_s=inf"))  # checkpoint and summary after the last epoch only
    with pytest.raises(ConfigError, match="trainer.save_every_s=nan is not allowed: must be a finite number"):
        validate(make_cfg("trainer.save_every_s=nan"))


def test_a_damaged_sweep_manifest_is_one_line_and_keeps_the_guard(cli, tmp_path):
    grid = ["-m", "seed=0,1", *TINY, cli.data_arg, f"hydra.sweep.dir={tmp_path / 's'}"]
    assert cli("train", *grid).returncode == 0
    for damage in ("{bad", "[]", '{"base": 3}'):
        (tmp_path / "s" / "sweep.json").write_text(damage)
        before = snapshot(tmp_path)
        assert_refused(cli("train", *grid, "trainer.epochs=3"), "sweep.json is damaged (", "move sweep.json aside")
        assert snapshot(tmp_path) == before
        plan = cli("plan", *grid[1:])
        assert plan.returncode == 2 and "Traceback" not in plan.stderr and "sweep.json is damaged" in plan.stderr


def test_data_root_that_cannot_take_mnist1d_is_refused_before_generating(cli, tmp_path, run_copy):
    ro = tmp_path / "ro"
    ro.mkdir()
    roots = [ro / "cache"] + ([Path("/proc/x")] if sys.platform.startswith("linux") and os.path.isdir("/proc/self") else [])
    before = snapshot(tmp_path)
    with read_only(ro):
        for root in roots:
            tiny = [a for a in TINY if not a.startswith("data")]
            res = cli("train", *tiny, "data=mnist1d", f"data.root={root}", f"hydra.run.dir={run_copy}")
            assert_refused(res, f"data.root={root} cannot take data=mnist1d: ", "generated into data.root",
                           "mnist1d/mnist1d_seed42.npz")
    assert snapshot(tmp_path) == before


def test_a_read_only_data_root_that_holds_the_files_is_fine(cli, tmp_path):
    """A shared read-only cache is legitimate: only a set that must be written is refused."""
    from regbench.config import DATASET_FILES
    from regbench.preflight import PreflightError, check

    cache = tmp_path / "cache"
    for name in ("mnist1d", "mnist", "cifar10"):
        sub, files = DATASET_FILES[name]
        (cache / sub).mkdir(parents=True)
        for f in files:
            (cache / sub / f).write_bytes(b"")  # preflight only looks for them
    with read_only(cache):
        for name in ("mnist1d", "mnist", "cifar10"):
            assert check([f"data={name}", f"data.root={cache}", f"hydra.run.dir={tmp_path / name}"])
        with pytest.raises(PreflightError, match="cannot take data=kmnist: .* and .*KMNIST/raw does not hold it yet"):
            check(["data=kmnist", f"data.root={cache}", f"hydra.run.dir={tmp_path / 'k'}"])
        with pytest.raises(PreflightError, match="data=kmnist: dataset not found in .*KMNIST/raw and data.download=false"):
            check(["data=kmnist", f"data.root={cache}", "data.download=false", f"hydra.run.dir={tmp_path / 'k'}"])
    archived = tmp_path / "archived"
    archived.mkdir()
    with read_only(archived):  # plan only reads: an archived, read-only sweep can still be planned
        res = cli("plan", "model.dropout=0,0.1", *TINY, f"hydra.sweep.dir={archived}")
        assert res.returncode == 0, res.stderr


# ------------------------------------------------------------ H5: bounds, memory


@pytest.mark.parametrize(
    "bad,fragment",
    [
        ("seed=99999999999999999999", "seed=99999999999999999999 is not allowed: must be in [0, 9223372036854775807]"),
        ("seed=-1", "seed=-1 is not allowed: must be in [0, "),
        ("trainer.epochs=100000000000000000000000", "trainer.epochs=100000000000000000000000 is not allowed: must be in [1, 1000000]"),
        ("trainer.replicas=200000", "trainer.replicas=200000 is not allowed: must be in [1, 10000]"),
        ("model.widths=[1000000,1000000]", "model.widths=[1000000, 1000000] with trainer.replicas=1 needs about "),
        ("model.widths=[10000000]", "model.widths=[10000000] is not allowed: every width must be <= 1000000"),
        ("trainer.batch_size=1000000000000", "trainer.batch_size=1000000000000 is not allowed"),
    ],
    ids=lambda v: v if "=" in v and len(v) < 40 else None,
)
def test_values_beyond_what_can_run_are_refused(cli, tmp_path, run_copy, bad, fragment):
    before = snapshot(tmp_path)
    line = assert_refused(cli("train", *TINY, cli.data_arg, f"hydra.run.dir={run_copy}", bad), fragment)
    if "needs about" in line:
        assert "TB of memory" in line and "is available on cpu" in line
    assert snapshot(tmp_path) == before


# ------------------------------------------------- F3: runtime keys in a sweep


@pytest.mark.parametrize("sweep", ["threads=1,2", "trainer.progress=true,false", "data.download=true,false", "trainer.eval_batch_size=64,128"])
def test_a_sweep_over_a_runtime_key_is_refused(cli, tmp_path, run_copy, sweep):
    key = sweep.split("=")[0]
    before = snapshot(tmp_path)
    res = cli("train", "-m", sweep, "model.dropout=0,0.1", *[a for a in TINY if not a.startswith(key + "=")],
              cli.data_arg, f"hydra.sweep.dir={tmp_path / 'sweep'}")
    assert_refused(res, f"{sweep}: {key} says how a job runs, not what it computes", "share one folder", "hydra.sweep.dir=")
    assert snapshot(tmp_path) == before


def test_one_value_of_a_runtime_key_in_a_sweep_is_fine(cli, tmp_path):
    tiny = [a for a in TINY if not a.startswith("threads=")]
    res = cli("train", "-m", "threads=1", "model.dropout=0,0.1", *tiny, cli.data_arg, f"hydra.sweep.dir={tmp_path / 'sweep'}")
    assert res.returncode == 0, res.stderr
    assert len(records.find_job_dirs(tmp_path / "sweep")) == 2


# ---------------------------------------------------------- U1, U2, U4 messages


def test_messages_name_what_to_change(cli, tmp_path, run_copy):
    before = snapshot(tmp_path)
    tiny = [a for a in TINY if not a.startswith("data")]
    assert_refused(cli("train", *tiny, "data=digits", "data.test_fraction=0.999", f"hydra.run.dir={run_copy}"),
                   "data.test_fraction=0.999 is not allowed here: it holds out 1795 of the 1797 digits examples")
    assert_refused(cli("train", "experiment=dropout_vs_bn"), "add it with +experiment=dropout_vs_bn")
    # `regbench train hydra.run.dir=my runs/x` typed without quotes: the shell makes two words
    assert_refused(cli("train", *TINY, "hydra.run.dir=my", "runs/x"),
                   "'runs/x' is not key=value: a value with spaces must be quoted as one word, e.g. 'hydra.run.dir=my runs/x'")
    assert snapshot(tmp_path) == before


# --------------------------------------------------------- U5: ablate scripts


def test_ablate_script_reports_the_sweep_folder_it_was_given(tmp_path, data_root):
    sweep = tmp_path / "mine"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    tiny = [a for a in TINY if a != "threads=1"] + ["threads=1", f"data.root={data_root}"]
    res = subprocess.run(
        [str(REPO / "scripts" / "ablate_dropout_rate.sh"), "model.dropout=0,0.1", "trainer.replicas=1", *tiny, f"hydra.sweep.dir={sweep}"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert res.returncode == 0, res.stderr
    assert (sweep / "report" / "report.md").exists(), res.stdout + res.stderr
    assert len(records.find_job_dirs(sweep)) == 2
    # refused before anything ran: the one line, and no report of some other folder
    res = subprocess.run([str(REPO / "scripts" / "ablate.sh"), "dropout_rate", "model.dropout=2", f"hydra.sweep.dir={tmp_path / 'bad'}"],
                         capture_output=True, text=True, env=env, timeout=60)
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert not (tmp_path / "bad").exists()
