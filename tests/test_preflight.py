"""Every job of a command line is composed and checked before Hydra writes anything."""

import re

import pytest

from regbench import records
from regbench.preflight import PreflightError, check

BAD = [
    (["model.dropuot=0.1"], "model.dropuot is not a config key; keys there: widths, activation,"),
    (["+model.dropuot=0.1"], "unknown config key model.dropuot (allowed in model: widths,"),
    (["model.dropout=abc"], "model.dropout: Value 'abc' of type 'str' could not be converted to Float"),
    (["model.batchnorm=maybe"], "model.batchnorm=maybe is not allowed: model.batchnorm is true or false (got 'maybe')"),
    # OmegaConf reads these as true without a word
    (["model.batchnorm=2"], "model.batchnorm=2 is not allowed: model.batchnorm is true or false (got 2)"),
    (["model.batchnorm=yes"], "model.batchnorm=yes is not allowed: model.batchnorm is true or false (got 'yes')"),
    (["model.batchnorm='true'"], "model.batchnorm='true' is not allowed: model.batchnorm is true or false (got the string "
                                 "'true': write it without quotes)"),
    (["-m", "model.batchnorm=false,1"], "model.batchnorm=false,1 is not allowed: model.batchnorm is true or false (got 1)"),
    (["trainer.test=0"], "trainer.test=0 is not allowed: trainer.test is true or false (got 0)"),
    (["model.bn_layers=[true,2]"], "model.bn_layers=[true,2] is not allowed: model.bn_layers is a list of true/false, "
                                   "one per hidden layer (e.g. model.bn_layers=[true,false]; got 2)"),
    (["model.bn_layers=true"], "model.bn_layers=true is not allowed: model.bn_layers is a list of true/false"),
    # a user's own job folder name that every job shares (the second overwrote the first's .hydra record), or that
    # is the sweep folder itself or outside it
    (["-m", "model.dropout=0,0.5", "hydra.sweep.dir=sw", "hydra.sweep.subdir=same"],
     "hydra.sweep.subdir=same gives jobs model.dropout=0 and model.dropout=0.5 one folder (sw/same): the second would "
     "overwrite the first's records; leave hydra.sweep.subdir unset"),
    (["-m", "seed=0,1", "hydra.sweep.dir=sw", "hydra.sweep.subdir=d${model.dropout}"], "gives jobs seed=0 and seed=1 one folder (sw/d0.0)"),
    (["-m", "seed=0,1", "hydra.sweep.dir=sw", "hydra.sweep.subdir=."], "hydra.sweep.subdir=. puts job seed=0 at sw, the sweep folder itself"),
    (["-m", "seed=0,1", "hydra.sweep.dir=sw", "hydra.sweep.subdir=../x${hydra.job.num}"],
     "hydra.sweep.subdir=../x${hydra.job.num} puts job seed=0 at sw/../x0, outside the sweep folder sw"),
    # a list of a group's options merged them (data=[digits,blobs] trained blobs)
    (["data=[digits,blobs]"], "data=[digits,blobs]: a job trains on one dataset (data=digits); to train one job on each, "
                              "sweep over them: regbench train -m data=digits,blobs"),
    (["-m", "optim=[adam,sgd]", "seed=0,1"], "optim=[adam,sgd]: a job trains on one optimizer (optim=adam)"),
    (["model.widths=[2.5]"], "model.widths[0]: Value '2.5'"),
    (["data=foo"], "data=foo: no such option; allowed: blobs, callable, cifar10, digits, fashion_mnist, file,"),
    (["optim=rmsprop"], "optim=rmsprop: no such option; allowed: adam, adamw, sgd"),
    (["hydra/launcher=nope"], "hydra/launcher=nope: no such option; allowed: basic, fused, joblib"),
    (["model.dropout=[0"], "cannot parse the overrides: no viable alternative at input '[0'"),
    (["model.dropout=0,0.5"], "model.dropout=0,0.5 sweeps over values: add -m"),
    (["-m", "model.dropout=0,1.0", "seed=0,1"], "model.dropout=1.0 is not allowed: must be in [0, 1) "
                                                "(probability of dropping a unit) (job model.dropout=1.0,seed=0)"),
    (["-m", "model.order=[linear,act]", "model.batchnorm=false,true"], "model.batchnorm=True is not allowed: needs a bn part"),
    (["+experiment=nope"], "experiment=nope: no such option; allowed: bn_dropout_position, dropout_rate,"),
    (["+experiment=dropout_vs_bn"], "this config defines a sweep (hydra.sweeper.params: model.dropout, model.batchnorm): add -m"),
    (["-m", "seed=range(0)"], "this sweep has no jobs"),
    (["hydra.mode=MULTIRUN", "model.dropout=0,1.0"], "model.dropout=1.0 is not allowed"),  # multirun without -m
    # a combination that only some of 68 jobs have is found too (seeds collapse: they never make a config invalid)
    (["-m", "model.order=[linear,act,bn,dropout],[linear,act]", "model.dropout=0,0.1", "seed=range(0,17)"],
     "needs a dropout part in model.order=['linear', 'act'] (or a rate of 0) (job model.order=[linear,act],model.dropout=0.1,seed=0)"),
    # a group that is not in the defaults list is added with +
    (["experiment=dropout_vs_bn"], "experiment=dropout_vs_bn: experiment is not in the config's defaults list, so it "
                                   "cannot be overridden; add it with +experiment=dropout_vs_bn"),
    # a value with spaces that the shell split into words
    (["hydra.run.dir=my", "runs/x"], "'runs/x' is not key=value: a value with spaces must be quoted as one word, "
                                     "e.g. 'hydra.run.dir=my runs/x'"),
    (["model.order=[linear,", "act]"], "e.g. 'model.order=[linear, act]'"),
    # Hydra's grammar said only "LexerNoViableAltException" of an unquoted value beyond ASCII
    (["hydra.run.dir=/tmp/é"], "a value with characters beyond ASCII must be quoted for Hydra, e.g. 'hydra.run.dir=\"/tmp/é\"'"),
    # each element of a sweep on its own: the whole quoted was one path
    (["-m", "data.path=my.npz,é.npz"], "e.g. 'data.path=my.npz,\"é.npz\"'"),
    (["hydra.run.dir="], "hydra.run.dir='' is not allowed: an empty folder would put the records into the current folder"),
    (["-m", "model.dropout=0,0.1", "hydra.sweep.dir="], "hydra.sweep.dir='' is not allowed"),
    (["seed=-1"], "seed=-1 is not allowed: must be in [0, 9223372036854775807]"),
    (["data=digits", "data.test_fraction=0.999"], "data.test_fraction=0.999 is not allowed here"),
    # jobs that differ only in a key left out of folder names would share one folder
    (["-m", "threads=1,2"], "threads=1,2: threads says how a job runs, not what it computes, so it is left out of job "
                            "folder names, and jobs that differ only in it would share one folder (default); run one "
                            "value per sweep, each in its own folder (e.g. threads=1 hydra.sweep.dir=outputs/sweep_threads_1)"),
    (["-m", "device=cpu,auto", "model.dropout=0,0.1"], "device=cpu,auto: device says how a job runs"),
    (["-m", "data.root=/a,/b"], "data.root=/a,/b: data.root says how a job runs"),
    # experiments alone: each job's folder is named from no override at all (a real run counted "2 completed" in one folder)
    (["-m", "+experiment=dropout_rate,label_noise_dropout"], "+experiment=dropout_rate,label_noise_dropout: experiment is "
     "left out of job folder names (hydra.job.config.override_dirname.exclude_keys), and jobs that differ only in it would "
     "share one folder (default); run one value per sweep, each in its own folder (e.g. +experiment=dropout_rate hydra.sweep.dir="),
]


@pytest.mark.parametrize("argv,message", BAD, ids=[" ".join(b[0]) for b in BAD])
def test_bad_command_lines_are_one_line(argv, message):
    with pytest.raises(PreflightError) as err:
        check(argv)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_sweep_expands_to_its_jobs_and_flags_are_left_to_hydra():
    cfg, jobs = check(["-m", "model.dropout=0,0.5", "optim=glob(*,exclude=sgd)", "trainer.epochs=2"])
    assert len(jobs) == 4 and ["model.dropout=0.5", "optim=adamw", "trainer.epochs=2"] in jobs
    assert check(["--cfg", "job", "model.dropout=abc"]) is None  # Hydra prints/handles these itself


def test_own_job_folder_names_that_differ_per_job_pass():
    for subdir in ("${hydra.job.num}", "${hydra.job.override_dirname}", "d${model.dropout}_${seed}"):
        assert check(["-m", "model.dropout=0,0.5", "seed=0,1", "hydra.sweep.dir=sw", f"hydra.sweep.subdir={subdir}"]), subdir
    for subdir in ("${data.name}", "${hydra:runtime.choices.data}"):  # a group's choice: composed per job by Hydra
        assert check(["-m", "data=blobs,teacher", "hydra.sweep.dir=sw", f"hydra.sweep.subdir={subdir}"]), subdir
    with pytest.raises(PreflightError, match=r"gives jobs model.dropout=0,seed=0 and model.dropout=0.5,seed=0 one folder \(sw/s0\)"):
        check(["-m", "model.dropout=0,0.5", "seed=0,1", "hydra.sweep.dir=sw", "hydra.sweep.subdir=s${seed}"])
    # with a config group's choice among the overrides (data=digits) the folders were not worked out: 2 of 4 jobs
    # trained, the others "in use" by the first, and the sweep said "2 jobs: 2 completed"
    with pytest.raises(PreflightError, match=r"gives jobs model.dropout=0,seed=0 and model.dropout=0,seed=1 one folder \(sw/do_0.0\)"):
        check(["-m", "model.dropout=0,0.3", "seed=0,1", "data=digits", "hydra.sweep.dir=sw", "hydra.sweep.subdir=do_${model.dropout}"])
    with pytest.raises(PreflightError, match=r"gives jobs model.dropout=0,data=digits and model.dropout=0.3,data=digits one folder"):
        check(["-m", "model.dropout=0,0.3", "data=digits,blobs", "hydra.sweep.dir=sw", "hydra.sweep.subdir=${data.name}"])
    assert check(["-m", "model.dropout=0,0.3", "data=digits,blobs", "hydra.sweep.dir=sw",
                  "hydra.sweep.subdir=${data.name}_${model.dropout}"])


def test_a_folder_named_by_its_place_in_the_sweep_that_holds_another_job_is_refused(tmp_path):
    """${hydra.job.num} after a value was added: job 1 was dropout 0.3 and is now 0.1. Hydra rewrote
    1/.hydra (the completed 0.3 run's record) and the job failed, again at every re-run."""
    sweep = tmp_path / "sw"
    for num, dropout in ((0, "0"), (1, "0.3")):
        (sweep / str(num)).mkdir(parents=True)
        records.write_summary(sweep / str(num), {"status": "completed", "overrides": [f"model.dropout={dropout}",
                                                                                       "trainer.epochs=1", "device=cpu"]})
    args = ["-m", "trainer.epochs=1", f"hydra.sweep.dir={sweep}", "hydra.sweep.subdir=${hydra.job.num}"]
    assert check(["model.dropout=0,0.3", *args])  # the same sweep again (device, a runtime key, aside): its own jobs
    from regbench.preflight import _parsed_value
    assert _parsed_value('"my data.npz"') == _parsed_value("'my data.npz'") and _parsed_value("0") == _parsed_value("0.0")
    with pytest.raises(PreflightError, match=r"puts job model.dropout=0.1 in .*/sw/1, which holds the records of another "
                                             r"job \(model.dropout=0.3\): a folder named by the job's place"):
        check(["model.dropout=0,0.1,0.3", *args])


def test_booleans_and_group_lists_that_are_allowed_pass():
    for argv in (["model.batchnorm=True"], ["model.bn_layers=[true,false]"], ["model.bn_layers=null"],
                 ["model.batchnorm=${trainer.test}"], ["logger=[tensorboard,mlflow]"], ["-m", "data=digits,blobs"],
                 ["-m", "model.batchnorm=false,true"]):
        assert check(argv) is not None, argv


def test_a_run_folder_with_another_config_is_refused_before_hydra_writes(tmp_path):
    run_dir = tmp_path / "run"
    cfg, _ = check([f"hydra.run.dir={run_dir}"])
    from omegaconf import OmegaConf

    from regbench.preflight import _without_hydra

    run_dir.mkdir()
    flat = records.flatten(OmegaConf.to_container(_without_hydra(cfg), resolve=True))
    records.write_summary(run_dir, {"status": "completed", "config": flat})
    assert check([f"hydra.run.dir={run_dir}"]) is not None  # the same config: fine (the trainer skips it)
    with pytest.raises(PreflightError, match=r"holds a run with another config \(model.dropout: 0.0 -> 0.3\)"):
        check([f"hydra.run.dir={run_dir}", "model.dropout=0.3"])


def test_hydra_interpolations_and_user_config_dirs_are_accepted(tmp_path):
    assert check(["data.root=${hydra:runtime.cwd}/data", "hydra.run.dir=" + str(tmp_path / "r_${hydra:runtime.choices.data}")])
    (tmp_path / "experiment").mkdir()
    (tmp_path / "experiment" / "mine.yaml").write_text("# @package _global_\nhydra:\n  sweeper:\n    params:\n      model.dropout: 0,0.2\n")
    cfg, jobs = check(["-m", f"hydra.searchpath=[file://{tmp_path}]", "+experiment=mine"])
    assert sorted(map(sorted, jobs)) == [["+experiment=mine", "model.dropout=0"], ["+experiment=mine", "model.dropout=0.2"]]



def test_groups_from_the_searchpath_and_run_dirs_named_from_overrides(tmp_path):
    (tmp_path / "sched").mkdir()
    (tmp_path / "sched" / "fast.yaml").write_text("# @package _global_\ntrainer:\n  epochs: 2\n")
    for extra in ([], ["-m", "model.dropout=0,0.1"]):
        assert check([*extra, f"hydra.searchpath=[file://{tmp_path}]", "+sched=fast"])
    run_dir = "hydra.run.dir=" + str(tmp_path / "x${hydra.job.override_dirname}")
    cfg, _ = check([run_dir, "optim=sgd", "model.dropout=0.3"])
    assert cfg.hydra.run.dir.endswith("xmodel.dropout=0.3,optim=sgd")  # the folder Hydra will use


def test_a_folder_in_use_is_refused_up_front(tmp_path):
    holder = records.acquire_lock(tmp_path)
    try:
        with pytest.raises(PreflightError, match="is in use by process"):
            check([f"hydra.run.dir={tmp_path}"])
    finally:
        records.release_lock(holder)


def test_plan_lists_a_sweep_in_training_that_train_refuses(tmp_path):
    """plan only reads: on a sweep still training it said "... is in use by process N ... wait for it to
    finish", where status lists the running jobs."""
    sweep = tmp_path / "sweep"
    cfg, jobs = check(["-m", "model.dropout=0,0.5", f"hydra.sweep.dir={sweep}"], command="plan")
    from regbench.preflight import _job_folders

    folder = _job_folders(cfg, jobs)[0]
    folder.mkdir(parents=True)
    holder = records.acquire_lock(folder)
    try:
        for command in ("plan", "train"):
            args = ["-m", "model.dropout=0,0.5", f"hydra.sweep.dir={sweep}"]
            if command == "plan":
                assert check(args, command=command)
                from regbench.plan import table

                records.write_summary(folder, {"status": "running", "config": {}})
                assert "running" in table(sweep, [folder.name], plan=True).splitlines()[-1]  # listed, as status lists it
            else:
                with pytest.raises(PreflightError, match="is in use by process"):
                    check(args, command=command)
    finally:
        records.release_lock(holder)


def test_one_value_of_a_runtime_key_and_custom_job_folders_may_be_swept():
    cfg, jobs = check(["-m", "threads=2", "model.dropout=0,0.1"])
    assert len(jobs) == 2
    # job folders named by number never collide: sweeping threads (a benchmark) is fine there
    cfg, jobs = check(["-m", "threads=1,2", "hydra.sweep.subdir=${hydra.job.num}"])
    assert len(jobs) == 2


def test_a_job_that_cannot_fit_in_memory_is_refused(monkeypatch):
    from regbench import preflight

    monkeypatch.setattr(preflight, "cpu_memory_available", lambda: 10**9)
    assert check(["device=cpu", "data=blobs"])  # about 15 MB
    with pytest.raises(PreflightError) as err:
        check(["device=cpu", "data=blobs", "model.widths=[4096,4096]", "trainer.replicas=20"])
    msg = str(err.value)
    assert msg.startswith("model.widths=[4096, 4096] with trainer.replicas=20 needs about ")
    assert "1.0 GB is available on cpu" in msg and "\n" not in msg
    with pytest.raises(PreflightError, match=r"^trainer.eval_batch_size=10000000 with model.widths=\[2048\] needs about"):
        check(["device=cpu", "data=blobs", "data.n_samples=10000000", "data.n_features=4", "model.widths=[2048]",
               "trainer.eval_batch_size=10000000"])
    with pytest.raises(PreflightError, match=r"^data=blobs needs about"):
        check(["device=cpu", "data=blobs", "data.n_samples=100000000", "data.n_features=200", "model.widths=[8]"])
    with pytest.raises(PreflightError, match=r"model.widths=\[8192,8192\],trainer.replicas=20\)$"):  # in a sweep: which job
        check(["-m", "device=cpu", "data=blobs", "model.widths=[8],[8192,8192]", "trainer.replicas=20"])


def test_cpu_checks_do_not_import_torch():
    """A refusal comes before torch is imported (well under a second)."""
    import subprocess
    import sys

    from regbench.preflight import GPU_NODES

    devices = ["cpu"] + ([] if any(__import__("os").path.exists(p) for p in GPU_NODES) else ["auto"])
    code = (
        "import sys; from regbench.preflight import check, memory_available\n"
        f"for d in {devices!r}:\n"
        "    assert check([f'device={d}', 'data.root=/nonexistent/cache'])\n"
        "    assert memory_available(d)[1] == 'cpu'\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


def test_memory_available_reads_meminfo():
    from regbench.preflight import cpu_memory_available

    if not __import__("os").path.exists("/proc/meminfo"):
        pytest.skip("no /proc/meminfo")
    avail = cpu_memory_available()
    assert avail is not None and 0 < avail


def _closed_port() -> int:
    import socket

    with socket.socket() as s:  # a port nothing listens on once closed: connection refused
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def download_servers(monkeypatch):
    """Point a set's download servers (config.DOWNLOAD_URLS) at local ports; no proxy."""
    from regbench import config, reach

    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(reach, "_answers", {})
    yield lambda name, *urls: monkeypatch.setitem(config.DOWNLOAD_URLS, name, urls)


def test_a_set_to_download_whose_servers_cannot_be_reached_is_refused_before_anything(tmp_path, download_servers, monkeypatch):
    """Offline (a compute node without internet), data=mnist with the default
    data.download=true and nothing in data.root: one line naming the servers
    and why, before any folder is made. Each job of a sweep made its folder,
    tried to download and failed with the same error, one after another."""
    import socket

    from omegaconf import OmegaConf

    from regbench.preflight import data_root_refusal

    root = tmp_path / "data"
    data = lambda name: OmegaConf.create({"name": name, "root": str(root), "download": True})  # noqa: E731
    down = f"http://127.0.0.1:{_closed_port()}/mnist/"
    download_servers("mnist", down)
    msg = data_root_refusal(data("mnist"))
    assert msg.startswith(f"data=mnist: dataset not found in {root}/MNIST/raw and it cannot be downloaded: 127.0.0.1: ")
    assert "refused" in msg.lower() and "train-images-idx3-ubyte" in msg and not root.exists()
    with pytest.raises(PreflightError, match="data=cifar10: dataset not found .* cannot be downloaded: 127.0.0.1"):
        download_servers("cifar10", down)
        check([f"data.root={root}", "data=cifar10", "-m", "seed=0,1", f"hydra.sweep.dir={tmp_path / 'sw'}"])
    assert not (tmp_path / "sw").exists()
    # one server that answers is enough (the first mirror down, the second up)
    with socket.socket() as up:
        up.bind(("127.0.0.1", 0))
        up.listen()
        download_servers("mnist", down, f"http://127.0.0.1:{up.getsockname()[1]}/mnist/")
        assert data_root_refusal(data("mnist")) is None
    # what was downloaded before is checked and unpacked by torchvision offline too
    download_servers("mnist", down)
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for f in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (raw / f"{f}.gz").write_bytes(b"")
    assert data_root_refusal(data("mnist")) is None
    # behind a proxy the download goes through it: the proxy is asked instead
    download_servers("kmnist", down)
    assert "refused" in data_root_refusal(data("kmnist")).lower()
    with socket.socket() as proxy:
        proxy.bind(("127.0.0.1", 0))
        proxy.listen()
        monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{proxy.getsockname()[1]}")
        assert data_root_refusal(data("kmnist")) is None
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{_closed_port()}")
    assert f"127.0.0.1: through the proxy http://127.0.0.1:" in data_root_refusal(data("kmnist"))


def test_reaching_a_server_takes_at_most_its_timeout_and_is_asked_again_later(monkeypatch):
    """A name server or host that never answers: the check gives up after its
    timeout, name lookup and every address included; an answer is reused
    briefly only (a server that comes up is seen as up)."""
    import socket
    import time

    from regbench import reach

    monkeypatch.setattr(reach, "_answers", {})
    for var in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    class Connection:
        def close(self):
            pass

    def refused(*a, **kw):
        raise ConnectionRefusedError(111, "Connection refused")

    monkeypatch.setattr(socket, "create_connection", lambda *a, **kw: time.sleep(30) or Connection())
    start = time.monotonic()
    assert reach.unreachable("http://hangs.invalid/", 0.2) == "no answer within 0.2 s"
    assert time.monotonic() - start < 10  # not the 30 s the connection takes
    monkeypatch.setattr(socket, "create_connection", refused)
    assert reach.unreachable("http://down.invalid/", 10.0) == "Connection refused"
    monkeypatch.setattr(socket, "create_connection", lambda *a, **kw: Connection())
    assert reach.unreachable("http://down.invalid/", 10.0) == "Connection refused"  # remembered
    monkeypatch.setattr(reach, "REMEMBER_S", 0.0)
    assert reach.unreachable("http://down.invalid/", 10.0) is None  # asked again: up now


def test_data_root_is_checked_only_where_a_set_is_written_into_it(tmp_path):
    from regbench.preflight import data_root_refusal
    from omegaconf import OmegaConf

    blocker = tmp_path / "file"
    blocker.write_text("")
    bad = str(blocker / "cache")  # under a file: nothing can be made there
    data = lambda name, **kw: OmegaConf.create({"name": name, "root": bad, "download": True, **kw})
    msg = data_root_refusal(data("mnist1d"))
    assert msg.startswith(f"data.root={bad} cannot take data=mnist1d: {blocker} exists and is not a folder")
    assert "mnist1d/mnist1d_seed42.npz" in msg
    assert "downloaded into data.root" in data_root_refusal(data("mnist"))
    assert data_root_refusal(data("cifar10"))
    # nothing would be written, but the loader would only say so after Hydra wrote the run folder
    assert data_root_refusal(data("mnist", download=False)) == (
        f"data=mnist: dataset not found in {bad}/MNIST/raw and data.download=false; put train-images-idx3-ubyte, "
        "train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte there (unpacked), or set data.root to "
        "the folder that holds MNIST/raw, or data.download=true")
    with pytest.raises(PreflightError, match="data=cifar10: dataset not found in .* and data.download=false"):
        check([f"data.root={tmp_path}", "data=cifar10", "data.download=false"])
    for name in ("digits", "blobs", "teacher"):
        assert data_root_refusal(data(name)) is None  # made in code
    with pytest.raises(PreflightError, match="cannot take data=mnist1d"):
        check([f"data.root={bad}"])
    assert check([f"data.root={bad}", "data=digits"])


def test_cuda_memory_is_asked_of_torch_only_when_the_device_check_imported_it(monkeypatch):
    import sys
    import types

    from regbench.preflight import memory_available

    asked = []
    cuda = types.SimpleNamespace(current_device=lambda: 0, mem_get_info=lambda i: asked.append(i) or (7 * 10**9, 8 * 10**9))
    monkeypatch.setitem(sys.modules, "torch", types.SimpleNamespace(cuda=cuda))
    assert memory_available("cuda:1") == (7 * 10**9, "cuda:1") and memory_available("cuda") == (7 * 10**9, "cuda:0")
    assert memory_available("cuda:1", gpu=False) is None and memory_available("mps") is None  # plan; unknown
    assert asked == [1, 0]
    monkeypatch.delitem(sys.modules, "torch")
    assert memory_available("cuda") is None


@pytest.mark.parametrize("sweep, derives", [
    (["model.dropout=0,0.3", "model.batchnorm=false,true", "optim.lr=0.01", "seed=0,1"], True),
    (["data.label_noise=0,0.2", "trainer.epochs=2,3", "model.input_dropout=0,0.1", "data=digits"], True),
    (["optim=adam,sgd", "model.dropout=0,0.5"], False),            # a config group swept: composed
    (["model.widths=[8],[8,8]", "model.dropout=0,0.5"], True),     # a list value is a value too
    (["+experiment=dropout_rate", "model.batchnorm=true"], True),   # the experiment in the base; its own sweep derived
])
def test_a_derived_setting_is_the_config_hydra_composes(sweep, derives, monkeypatch):
    """preflight checks each setting of a sweep on a config derived from the
    composed base (the swept plain values set as Hydra sets them) instead of
    composing each; where it derives one, it is exactly what Hydra composes."""
    from hydra import compose, initialize_config_module
    from omegaconf import OmegaConf

    from regbench import preflight

    seen = []
    real = preflight.derive_setting
    monkeypatch.setattr(preflight, "derive_setting", lambda *a: seen.append((a[2], real(*a))) or seen[-1][1])
    try:
        check(["-m", *sweep])
    finally:
        preflight.reset()
    assert seen and all((cfg is not None) == derives for _, cfg in seen), seen
    with initialize_config_module(config_module="regbench.conf", version_base="1.3"):
        for job, cfg in seen:
            if cfg is not None:
                assert OmegaConf.to_container(cfg) == OmegaConf.to_container(compose(config_name="config", overrides=job)), job


def test_plan_refuses_the_sweep_folders_train_refuses(tmp_path):
    """plan said "2 unreadable: summary.json is damaged" for a file, and "2 missing" for someone else's folder,
    both of which train refuses."""
    (tmp_path / "theirs").mkdir()
    (tmp_path / "theirs" / "notes.txt").write_text("mine")
    for where, message in ((tmp_path / "theirs" / "notes.txt", "is a file, not a sweep folder"),
                           (tmp_path / "theirs", "holds files that are not a regbench sweep")):
        for command in ("plan", "train"):
            with pytest.raises(PreflightError, match=message if command == "plan" else "hydra.sweep.dir="):
                check(["-m", "model.dropout=0,0.5", f"hydra.sweep.dir={where}"], command=command)


def test_own_data_named_without_its_dataset_is_refused(capsys, tmp_path):
    """``regbench train data.path=mine.csv`` (no data=file) trained MNIST-1D after a warning, exit 0."""
    for argv, says in ((["data.path=mine.csv"], "data.path=mine.csv is read only by data=file, and these jobs train "
                                                 "data.name=mnist1d; add data=file to train on it"),
                       (["-m", "data=digits,blobs", "data.loader=m:f"], "data.loader=m:f is read only by data=callable, "
                                                                         "and these jobs train data.name=blobs,digits")):
        with pytest.raises(PreflightError, match=re.escape(says)):
            check(argv)
    (tmp_path / "mine.csv").write_text("a,label\n" + "".join(f"{i},{i % 2}\n" for i in range(40)))
    assert check(["-m", "data=mnist1d,file", f"data.path={tmp_path / 'mine.csv'}", "data.target=label"])  # read by some jobs
    assert capsys.readouterr().err == ""


def test_a_typed_value_no_job_reads_is_a_warning(capsys):
    """data=digits data.n_classes=3 trained digits' 10 classes without a word."""
    assert check(["data=digits", "data.n_classes=3"])
    assert capsys.readouterr().err == ("regbench train: warning: data.n_classes=3 has no effect with data.name=digits: "
                                       "only blobs, teacher read it\n")
    assert check(["-m", "optim=adam,adamw", "optim.momentum=0.5"])
    assert "optim.momentum=0.5 has no effect with optim.name=adam,adamw: only sgd read it" in capsys.readouterr().err
    assert check(["-m", "seed=0,1", "report.options=[--metric,val_loss]"])  # and no report is written when they end
    assert capsys.readouterr().err == ("regbench train: warning: report.options=[--metric,val_loss] has no effect without "
                                       "report.at_end=true (the report written when the jobs end); for a report typed "
                                       "later, give the options to `regbench report`\n")
    # keys read only by BatchNorm, an act part, or a set without its own test split: a sweep over them made cells
    # that were one setting
    for argv, says in ((["-m", "model.bn_momentum=0.1,0.5"], "model.bn_momentum=0.1,0.5 has no effect without BatchNorm"),
                       (["model.bn_eps=1e-3"], "model.bn_eps=1e-3 has no effect without BatchNorm"),
                       (["model.order=[linear,dropout]", "model.activation=tanh"],
                        "model.activation=tanh has no effect: model.order has no act part"),
                       (["data.test_fraction=0.3"], "data.test_fraction=0.3 has no effect with data.name=mnist1d: only "
                                                    "digits, blobs, teacher, file, callable read it")):
        assert check(argv)
        err = capsys.readouterr().err
        assert err.startswith(f"regbench train: warning: {says}") and err.count("\n") == 1, (argv, err)
    for argv in (["-m", "data=digits,blobs", "data.n_classes=3"], ["optim=sgd", "optim.momentum=0.5"],
                 ["optim.schedule=step", "optim.gamma=0.5"], ["data=digits"],
                 ["report.at_end=true", "report.options=[-q]"], ["-m", "model.batchnorm=false,true", "model.bn_eps=1e-3"],
                 ["model.bn_layers=[true,false]", "model.bn_momentum=0.5"], ["model.activation=tanh"],
                 ["data=digits", "data.test_fraction=0.3"],
                 ["model.order=[linear,dropout]", "model.init=xavier", "model.activation=tanh"]):  # the init's gain
        assert check(argv) and capsys.readouterr().err == "", argv  # read by some job, or nothing typed
