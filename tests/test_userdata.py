"""Your own data: data=file (.npz, .csv, .parquet) and data=callable."""

import os
import re
import time

import numpy as np
import pandas as pd
import pytest

from conftest import TINY
from regbench import records
from regbench.data import DataError, build_dataset
from regbench.userdata import UserDataError, load, shape

TRAIN = [a for a in TINY if not a.startswith("data")]  # the model and trainer of TINY, with your data


def arrays(n=200, d=5, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)
    return x, rng.integers(0, classes, size=n)


def test_npz_csv_and_a_callable_give_the_same_arrays(tmp_path, make_cfg, monkeypatch):
    x, y = arrays()
    np.savez(tmp_path / "d.npz", x=x, y=y)
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(5)]).assign(label=y)
    frame.to_csv(tmp_path / "d.csv", index=False)
    (tmp_path / "mine.py").write_text(
        "import numpy as np\n"
        f"def load():\n    d = np.load({str(tmp_path / 'd.npz')!r})\n    return {{'x': d['x'], 'y': d['y']}}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    got = [load(make_cfg("data=file", f"data.path={tmp_path / 'd.npz'}").data),
           load(make_cfg("data=file", f"data.path={tmp_path / 'd.csv'}", "data.target=label").data),
           load(make_cfg("data=callable", "data.loader=mine:load").data)]
    for gx, gy, gxt, gyt in got:
        assert np.allclose(gx, x) and np.array_equal(gy, y) and gxt is None and gyt is None
    assert shape(make_cfg("data=file", f"data.path={tmp_path / 'd.npz'}").data) == (5, 3, 200, None)


def test_own_data_goes_through_the_same_splits_and_label_noise(tmp_path, make_cfg):
    x, y = arrays(n=400, classes=4)
    xt, yt = arrays(n=50, classes=4, seed=1)
    np.savez(tmp_path / "d.npz", x=x, y=y, x_test=xt, y_test=yt)
    cfg = make_cfg("data=file", f"data.path={tmp_path / 'd.npz'}", "data.train_size=100", "data.label_noise=0.5")
    d = build_dataset(cfg.data)
    assert (len(d.train), len(d.val), len(d.test)) == (100, 80, 50)  # val_fraction 0.2 of 400; official test kept
    assert d.n_features == 5 and d.n_classes == 4 and d.n_corrupted > 20
    assert abs(float(d.train.x.mean())) < 0.2  # standardized with training statistics


@pytest.mark.parametrize(
    "write, extra, message",
    [
        (lambda p: None, [], "no such file (not found); give a .npz, .csv, .parquet file"),
        (lambda p: os.mkfifo(p), [], "no such file (not a regular file: a pipe, socket or device)"),  # it said "not found"
        (lambda p: p.mkdir(), [], "no such file (a folder)"),
        (lambda p: np.savez(p, a=np.zeros((4, 2)), b=np.zeros(4)), [], "no array x or y (it has a, b)"),
        (lambda p: np.savez(p, x=np.zeros((4, 2)), y=np.zeros(4), x_test=np.zeros((2, 2))), [], "x_test and y_test come together"),
        (lambda p: np.savez(p, x=np.full((4, 2), np.nan), y=np.arange(4) % 2), [], "x holds 8 NaN/inf values (rows 0, 1, 2, 3)"),
        (lambda p: np.savez(p, x=np.zeros((4, 2)), y=np.array([0, 1, 0.5, 1])), [], "1 labels that are not whole numbers"),
        # it said "1 labels that are not whole numbers (e.g. nan)"
        (lambda p: np.savez(p, x=np.zeros((4, 2)), y=np.array([0, 1, np.nan, 1])), [], "y holds 1 NaN/inf label (row 2): missing labels?"),
        (lambda p: np.savez(p, x=np.zeros((4, 2)), y=np.array(["a", "b", "a", "b"])), [], "holds <U1 labels (e.g. 'a')"),
        (lambda p: np.savez(p, x=np.zeros((4, 2)), y=np.array([0, 1, -1, 1])), [], "negative labels (-1)"),
        # past int64: they wrapped to negative labels ("negative labels (-9223372036854775808)"), or read as "object labels"
        (lambda p: np.savez(p, x=np.zeros((4, 2)), y=np.array([0, 1, 1e30, 1])), [], "y holds 1 label too large to be classes (e.g. 1e+30)"),
        (lambda p: np.savez(p, x=np.zeros((4, 2)), y=np.array([0, 1, 2**63, 1], dtype=np.uint64)), [],
         "y holds 1 label too large to be classes (e.g. 9.22e+18)"),
        (lambda p: p.with_suffix(".csv").write_text("a,label\n1,0\n2,100000000000000000000000\n"), ["data.target=label"],
         "column label holds 1 label too large to be classes (e.g. 1e+23)"),
        (lambda p: p.with_suffix(".csv").write_text("a,label\n1,0\n2," + "9" * 400 + "\n"), ["data.target=label"],
         "column label holds 1 label too large to be classes (e.g. a 400-digit number)"),  # "int too large to convert to float"
        (lambda p: np.savez(p, x=np.zeros((4, 2)), y=np.zeros(3, int)), [], "x has 4 rows but y has 3 labels"),
        (lambda p: p.with_suffix(".csv").write_text("a,b,label\n1,x,0\n2,y,1\n"), ["data.target=label"],
         "feature column b not numeric"),
        (lambda p: p.with_suffix(".csv").write_text("a,label\n1,0\n2,1\n"), [], "a table needs data.target=<label column>"),
        (lambda p: p.with_suffix(".csv").write_text("a,label\n1,0\n2,1\n"), ["data.target=y"], "data.target=y is not a column"),
        # it was ignored: the .npz's y trained as the labels whatever data.target said
        (lambda p: np.savez(p, x=np.zeros((4, 2)), y=np.array([0, 1, 0, 1]), label=np.array([1, 0, 1, 0])), ["data.target=label"],
         "data.target=label names a column of a .csv/.parquet table; a .npz's labels are its array y"),
        (lambda p: np.savez(p, x=np.zeros((6, 2)), y=np.array([1, 2, 3, 1, 2, 3])), [],
         "labels must be the classes 0..C-1, each present in the training labels; y has 1, 2, 3 and lacks 0: "
         "renumber the classes 0..K-1 first"),
        (lambda p: np.savez(p, x=np.zeros((4, 2)), y=np.array([0, 10, 0, 20])), [], "y has 0, 10, 20 and lacks 1, 2, 3, 4, 5, 6, ... (18 in all)"),
        (lambda p: np.savez(p, x=np.zeros((4, 2)), y=np.array([3, 3, 3, 3])), [], "y has 3 and lacks 0, 1, 2"),
        (lambda p: np.savez(p, x=np.zeros((4, 2)), y=np.array([0, 1, 2, 10**12])), [],  # at once, not 7 TiB of classes
         "y has 0, 1, 2, 1000000000000 and lacks 3, 4, 5, 6, 7, 8, ... (999999999997 in all)"),
        (lambda p: np.savez(p, x=np.zeros((4, 2)), y=np.array([0, 1, 0, 1]), x_test=np.zeros((2, 2)), y_test=np.array([2, 0])), [],
         "y has 0, 1 and lacks 2 (y_test has 2)"),
        (lambda p: np.savez(p, x=np.zeros((4, 0)), y=np.array([0, 1, 0, 1])), [], "x has no features (shape (4, 0))"),
        (lambda p: np.savez(p, x=np.zeros((0, 3)), y=np.zeros(0, int)), [], "x is empty (shape (0, 3))"),
        (lambda p: p.with_suffix(".csv").write_text("1.5,2.5,0\n1,2,1\n"), ["data.target=label"],
         "its first line holds numbers (1.5, 2.5, 0), not column names; a .csv needs a header row"),
        (lambda p: p.with_suffix(".csv").write_text("a,b,label\n"), ["data.target=label"], "the table has a header but no rows"),
        # finite, but inf as float32: it said "NaN/inf values", with numpy's overflow warning on stderr
        (lambda p: np.savez(p, x=np.array([[1.0, 1e39], [0, 0], [1, 1], [2, 2]]), y=np.array([0, 1, 0, 1])), [],
         "x holds 1 value too large for float32 (|v| > 3.4e38; e.g. 1e+39 in row 0)"),
        (lambda p: p.write_bytes(b"not an archive"), [], "not a .npz (not a zip archive); a .npz needs arrays x"),  # "pickled data"
        (lambda p: np.save(open(p, "wb"), np.zeros(3)), [], "not a .npz (a .npy array)"),
        (lambda p: np.savez(p, x=np.uint8(7), y=np.array([0])), [], "x must be numbers shaped (N, features...), not uint8 ()"),  # "len() of unsized object"
        # a repeated name: pandas read the second `label` as a feature `label.1`, the answer among the inputs (val_acc 100%)
        (lambda p: p.with_suffix(".csv").write_text("a,label,label\n1,0,0\n2,1,1\n3,0,0\n4,1,1\n"), ["data.target=label"],
         "column name label appears more than once in the header (data.target=label among them"),
        # pandas' to_csv() writes its index as an unnamed first column: it was a feature ("Unnamed: 0"), rows in class order
        (lambda p: pd.DataFrame({"a": [1.0, 2, 3, 4], "label": [0, 1, 0, 1]}).to_csv(p.with_suffix(".csv")), ["data.target=label"],
         "column 1 of the header has no name (a DataFrame's index, as to_csv() writes it by default? write it with index=False)"),
        (lambda p: p.with_suffix(".csv").write_text("a,label,\n1,0,\n2,1,\n3,0,\n4,1,\n"), ["data.target=label"],
         "column 3 of the header has no name (a trailing comma?)"),  # it said "x holds 4 NaN/inf values"
        (lambda p: p.with_suffix(".csv").write_text("a;b;label\n1;2;0\n3;4;1\n"), ["data.target=label"],
         "its header is one column (a;b;label), split by ';'; a .csv is read with commas between columns"),
        (lambda p: p.with_suffix(".csv").write_bytes(b""), ["data.target=label"], "the file is empty (0 bytes)"),  # "No columns to parse"
        (lambda p: p.write_bytes(b""), [], "the file is empty (0 bytes)"),  # "not a .npz (not a zip archive)"
        (lambda p: p.with_suffix(".csv").write_bytes(b"a,b,label\n1,2,0\n\xe9,4,1\n"), ["data.target=label"],
         "not UTF-8 text (a .csv is read as UTF-8; save it as UTF-8"),  # UnicodeDecodeError
        # a headerless file whose first row repeats a value: "column name 0 appears more than once" hid the real fault
        (lambda p: p.with_suffix(".csv").write_text("0,0,1\n0,1,0\n1,1,1\n"), ["data.target=label"],
         "its first line holds numbers (0, 0, 1), not column names"),
        # pandas skips blank lines before the header: the repeated label there was read as a feature
        (lambda p: p.with_suffix(".csv").write_text("\na,label,label\n1,0,0\n2,1,1\n"), ["data.target=label"],
         "column name label appears more than once in the header"),
        # the same number of features, channels first against last: flattened alike, the test examples were scrambled
        (lambda p: np.savez(p, x=np.zeros((4, 3, 2, 2)), y=np.array([0, 1, 0, 1]), x_test=np.zeros((2, 2, 2, 3)),
                            y_test=np.array([0, 1])), [],
         "x's examples are shaped (3, 2, 2), x_test's (2, 2, 3); the test examples must be laid out as the training ones"),
    ],
)
def test_bad_files_are_one_clear_line(tmp_path, make_cfg, write, extra, message):
    path = tmp_path / "d.npz"
    write(path)
    if path.with_suffix(".csv").exists():
        path = path.with_suffix(".csv")
    with pytest.raises(UserDataError, match=re.escape(message)):
        load(make_cfg("data=file", f"data.path={path}", *extra).data)


def test_parquet_needs_pyarrow_or_reads_like_csv(tmp_path, make_cfg):
    x, y = arrays()
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(5)]).assign(label=y)
    cfg = make_cfg("data=file", f"data.path={tmp_path / 'd.parquet'}", "data.target=label").data
    try:
        frame.to_parquet(tmp_path / "d.parquet")
    except ImportError:
        (tmp_path / "d.parquet").write_bytes(b"PAR1")
        with pytest.raises(UserDataError, match="reading .parquet needs pyarrow: pip install pyarrow"):
            load(cfg)
        return
    gx, gy, _, _ = load(cfg)
    assert np.allclose(gx, x) and np.array_equal(gy, y)


def test_a_callable_that_misbehaves_is_one_line(tmp_path, make_cfg, monkeypatch):
    (tmp_path / "bad.py").write_text("import sys\ndef boom():\n    raise OSError('disk gone')\ndef single():\n    return 3\n"
                                     "def leave():\n    sys.exit(3)\nnumber = 7\n")
    (tmp_path / "script.py").write_text("import sys\nsys.exit(0)\ndef load():\n    pass\n")  # regbench exited 0, silent
    monkeypatch.syspath_prepend(str(tmp_path))
    for loader, message in [("bad:boom", "raised OSError: disk gone"), ("bad:single", "returned int; it must return"),
                            ("bad:leave", r"called sys.exit\(3\); a loader returns its arrays"),  # regbench exited 3, silent
                            ("bad:nothing", "bad has no function nothing"), ("no_such_mod:f", "cannot import no_such_mod"),
                            ("bad:number", "bad has an int, not a function, named number"),  # it said "no function"
                            ("bad", "give the function as module:function"),
                            ("script:load", r"importing script called sys.exit\(0\); a loader's module must only define")]:
        with pytest.raises((UserDataError, DataError), match=message):
            load(make_cfg("data=callable", f"data.loader={loader}").data)



def test_x_and_x_test_that_differ_only_in_dimensions_of_size_1_are_read(tmp_path, make_cfg):
    """(1, 4, 4) against (4, 4) flatten in the same order: refused as another layout ("transpose one of them")."""
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x=rng.random((20, 1, 4, 4)), y=np.arange(20) % 2, x_test=rng.random((6, 4, 4)),
             y_test=np.arange(6) % 2)
    x, _, x_test, _ = load(make_cfg("data=file", f"data.path={tmp_path / 'd.npz'}").data)
    assert x.shape == (20, 16) and x_test.shape == (6, 16)


def test_a_csv_header_with_spaces_after_its_commas_names_its_columns(tmp_path, make_cfg):
    """``a, b, label``: data.target=label was "not a column; its columns: a,  b,  label"."""
    (tmp_path / "d.csv").write_text("a, b, label\n" + "".join(f"{i}, {i * 2}, {i % 2}\n" for i in range(10)))
    x, y, _, _ = load(make_cfg("data=file", f"data.path={tmp_path / 'd.csv'}", "data.target=label").data)
    assert x.shape == (10, 2) and y.tolist() == [i % 2 for i in range(10)]


def test_a_loaders_dict_with_keys_regbench_does_not_read_is_refused(tmp_path, make_cfg, monkeypatch):
    """``dict(x=..., y=..., x_tset=..., y_tset=...)`` trained with its test set
    dropped: the test split was cut from x instead, without a word."""
    (tmp_path / "typo.py").write_text("import numpy as np\ndef load():\n    x = np.zeros((8, 2)); y = np.arange(8) % 2\n"
                                      "    return dict(x=x, y=y, x_tset=x[:2], y_tset=y[:2])\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(UserDataError, match=re.escape("returned a dict with keys x_tset, y_tset, which regbench does not "
                                                      "read; its keys are x, y and, together, x_test, y_test")):
        load(make_cfg("data=callable", "data.loader=typo:load").data)


def test_a_class_the_split_leaves_out_of_training_is_refused(tmp_path, make_cfg):
    """One example of class 2, no test split of its own: a data.seed that draws
    it into validation or test trained a 3-class model that never saw class 2,
    scored on it, exit 0 (the same class only in y_test was refused)."""
    x, y = arrays(n=60, classes=2)
    y[7] = 2
    np.savez(tmp_path / "d.npz", x=x, y=y)
    outcomes = []
    for seed in range(8):
        try:
            data = build_dataset(make_cfg("data=file", f"data.path={tmp_path / 'd.npz'}", f"data.seed={seed}").data)
            assert set(data.train.y.tolist()) == {0, 1, 2}
            outcomes.append("trained")
        except DataError as exc:
            assert str(exc) == (f"data=file: class 2 (1 example) is not in the training split drawn by data.seed={seed}; every "
                                "class needs training examples: give more examples of it, a larger data.train_size, another "
                                "data.seed, or drop that class")
            outcomes.append("refused")
    assert set(outcomes) == {"trained", "refused"}, outcomes  # the seeds put it on either side


def test_uint8_x_with_a_test_split_of_another_type_is_one_line(tmp_path, make_cfg, monkeypatch):
    """uint8 features are pixels, scaled to [0, 1] by regbench.data; an int64 x_test of the same pixels was not
    (test_loss 51.9 instead of 0.80, silently): x and x_test are both uint8 or neither, from a file or a loader."""
    x = np.random.default_rng(0).integers(0, 256, size=(40, 6)).astype(np.uint8)
    y = np.arange(40) % 2
    np.savez(tmp_path / "mixed.npz", x=x[:30], y=y[:30], x_test=x[30:].astype(np.int64), y_test=y[30:])
    np.savez(tmp_path / "reverse.npz", x=x[:30].astype(np.float32), y=y[:30], x_test=x[30:], y_test=y[30:])
    (tmp_path / "pixels.py").write_text("import numpy as np\n"
                                        f"def get():\n    d = np.load({str(tmp_path / 'mixed.npz')!r})\n"
                                        "    return d['x'], d['y'], d['x_test'].tolist(), d['y_test']\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for cfg, message in [
        (make_cfg("data=file", f"data.path={tmp_path / 'mixed.npz'}"), "x is uint8 (pixels, scaled to [0, 1]) but x_test is int64"),
        (make_cfg("data=file", f"data.path={tmp_path / 'reverse.npz'}"), "x_test is uint8 (pixels, scaled to [0, 1]) but x is float32"),
        (make_cfg("data=callable", "data.loader=pixels:get"), "x is uint8 (pixels, scaled to [0, 1]) but x_test is int64"),
    ]:
        with pytest.raises(UserDataError, match=re.escape(message + " (used as is), so the test metrics would be on "
                                                          "another scale; give both as uint8, or neither")):
            load(cfg.data)
        with pytest.raises(DataError, match=re.escape(message)):  # a run: before any training
            build_dataset(cfg.data)
    np.savez(tmp_path / "both.npz", x=x[:30], y=y[:30], x_test=x[30:], y_test=y[30:])
    d = build_dataset(make_cfg("data=file", f"data.path={tmp_path / 'both.npz'}", "data.standardize=none").data)
    assert float(d.train.x.max()) <= 1 and float(d.test.x.max()) <= 1 and float(d.test.x.max()) > 0.9  # one scale


@pytest.mark.slow
def test_cli_trains_your_file_and_refuses_a_bad_one_before_writing(cli, tmp_path):
    x, y = arrays(n=300)
    np.savez(tmp_path / "mine.npz", x=x, y=y)
    res = cli("train", "data=file", "data.path=mine.npz", *TRAIN, "hydra.run.dir=run")
    assert res.returncode == 0, res.stderr
    summary = records.read_summary(tmp_path / "run")
    assert summary["status"] == "completed" and summary["data"]["n_classes"] == 3 and summary["data"]["n_test"] == 60
    np.savez(tmp_path / "bad.npz", x=x, y=y.astype(float) + 0.5)
    res = cli("train", "data=file", "data.path=bad.npz", *TRAIN, "hydra.run.dir=bad_run")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.strip() == ("regbench train: error: data.path=bad.npz: y holds 300 labels that are not whole "
                                  f"numbers (e.g. {y[0] + 0.5}); labels are integer classes 0..C-1")
    assert not (tmp_path / "bad_run").exists()  # refused before Hydra wrote anything
    (tmp_path / "loaders.py").write_text("import numpy as np\ndef get():\n    d = np.load('mine.npz')\n    return d['x'], d['y']\n")
    res = cli("train", "data=callable", "data.loader=loaders:get", *TRAIN, "hydra.run.dir=run2")
    assert res.returncode == 0, res.stderr
    assert records.read_summary(tmp_path / "run2")["data"]["n_train"] == summary["data"]["n_train"]
    # a sweep on a loader under the default (fused) launcher: its size is unknown until called (it crashed)
    res = cli("train", "-m", "data=callable", "data.loader=loaders:get", "model.dropout=0,0.5", *TRAIN, "hydra.sweep.dir=sw")
    assert res.returncode == 0 and "2 jobs: 2 completed" in res.stdout, res.stdout + res.stderr


def test_runs_on_different_contents_are_different_datasets_to_the_report(cli, tmp_path):
    """A run records its file's absolute path and a fingerprint of the contents: runs on another file, or on
    the same path after its contents changed, are refused together (the report averaged them as one cell)."""
    from regbench.report import load as report_load
    from regbench.report.load import ReportError
    x, y = arrays(n=300)
    np.savez(tmp_path / "mine.npz", x=x, y=y)
    assert cli("train", "data=file", "data.path=mine.npz", *TRAIN, "hydra.run.dir=runs/a").returncode == 0
    np.savez(tmp_path / "mine.npz", x=x + 1, y=y)  # the same path, other contents
    assert cli("train", "data=file", "data.path=mine.npz", *TRAIN, "hydra.run.dir=runs/b").returncode == 0
    a, b = (records.read_summary(tmp_path / "runs" / k)["data"] for k in "ab")
    assert a["path"] == b["path"] == str((tmp_path / "mine.npz").resolve())
    assert a["fingerprint"] != b["fingerprint"] and len(a["fingerprint"]) == 16
    with pytest.raises(ReportError, match=r"runs from different datasets: file mine.npz \(\w{16}\) \(1 run\), "):
        report_load.load_study([tmp_path / "runs"])
    assert len(report_load.load_study([tmp_path / "runs"], allow_mixed=True).runs) == 2
    # a run recorded before fingerprints: refused with a hint, not silently merged
    summary = records.read_summary(tmp_path / "runs" / "b")
    del summary["data"]["fingerprint"], summary["data"]["path"]
    records.write_summary(tmp_path / "runs" / "b", summary)
    with pytest.raises(ReportError, match="runs labelled only file were recorded before regbench kept a fingerprint"):
        report_load.load_study([tmp_path / "runs"])


def test_a_completed_job_whose_file_changed_since_says_so_when_skipped(cli, tmp_path):
    """It said "skipped: ... already completed", as if its records were of the new contents."""
    x, y = arrays(n=300)
    np.savez(tmp_path / "mine.npz", x=x, y=y)
    sweep = ("train", "-m", "data=file", "data.path=mine.npz", "seed=0,1", *TRAIN, "hydra.sweep.dir=sw")
    assert cli("train", "data=file", "data.path=mine.npz", *TRAIN, "hydra.run.dir=run").returncode == 0
    assert cli(*sweep).returncode == 0
    again = cli("train", "data=file", "data.path=mine.npz", *TRAIN, "hydra.run.dir=run")
    assert again.returncode == 0 and "already completed (2 epochs)\n" in again.stdout + again.stderr
    before = records.read_summary(tmp_path / "run")
    np.savez(tmp_path / "mine.npz", x=x + 1, y=y)  # the same path, other contents, written after the records
    later = time.time() + 60  # after every job's records, however long the commands above took
    os.utime(tmp_path / "mine.npz", (later, later))
    res = cli("train", "data=file", "data.path=mine.npz", *TRAIN, "hydra.run.dir=run")
    out = res.stdout + res.stderr
    assert res.returncode == 0 and "already completed (2 epochs), on other data: " in out, out
    assert f"(fingerprint {before['data']['fingerprint']}, now " in out and "train into another folder" in out
    assert records.read_summary(tmp_path / "run") == before  # skipped, its records as they were
    res = cli(*sweep)
    assert res.returncode == 0 and res.stdout.count("skipped (already completed, on other data: ") == 2, res.stdout
    # a sweep's skipped jobs read the file once per process, not once each
    from regbench.userdata import _fingerprint_now, changed_since
    _fingerprint_now.cache_clear()
    for job in (tmp_path / "sw").iterdir():
        if (job / records.SUMMARY_FILE).is_file():
            assert changed_since(records.read_summary(job), job).startswith(", on other data: ")
    assert _fingerprint_now.cache_info().misses == 1 and _fingerprint_now.cache_info().hits == 1
    # a seed added now trains on the new contents: the sweep mixes data, and its closing line said
    # "next: regbench report", which refuses the mix
    res = cli(*[a if a != "seed=0,1" else "seed=0,1,2" for a in sweep])
    assert res.returncode == 0 and "1 completed, 2 skipped" in res.stdout, res.stdout
    (last,) = [line for line in res.stdout.splitlines() if line.startswith("next: ")]
    assert last.startswith("next: these jobs trained on different contents of one file or loader (") and "refuses to mix" in last
    assert "next: regbench report" not in res.stdout
    # the file back as it was (newer still): the same data, nothing to say
    np.savez(tmp_path / "mine.npz", x=x, y=y)
    os.utime(tmp_path / "mine.npz", (later + 5, later + 5))
    res = cli("train", "data=file", "data.path=mine.npz", *TRAIN, "hydra.run.dir=run")
    assert "other data" not in res.stdout + res.stderr


def test_a_csv_whose_header_is_pandas_default_column_numbers_is_read(tmp_path, make_cfg):
    x, y = arrays()
    pd.DataFrame(np.c_[x, y]).to_csv(tmp_path / "d.csv", index=False)  # header 0,1,2,3,4,5
    gx, gy, _, _ = load(make_cfg("data=file", f"data.path={tmp_path / 'd.csv'}", "data.target=5").data)
    assert np.allclose(gx, x) and np.array_equal(gy, y)


def test_relative_paths_are_read_from_where_the_command_was_typed_also_when_hydra_changes_folder(cli, tmp_path):
    """hydra.job.chdir=true runs a job in its own folder: data.path, data.root and data.loader's module,
    given relative to the folder the command was typed in, were looked for in the job's folder
    ("no such file" for a file that is there)."""
    x, y = arrays(n=300)
    np.savez(tmp_path / "mine.npz", x=x, y=y)
    (tmp_path / "my_loaders.py").write_text("import numpy as np\ndef get():\n    return np.ones((90, 3), 'float32'), np.arange(90) % 2\n")
    res = cli("train", "data=file", "data.path=mine.npz", *TRAIN, "hydra.run.dir=run", "hydra.job.chdir=true")
    assert res.returncode == 0, res.stderr
    assert records.read_summary(tmp_path / "run")["data"]["path"] == str((tmp_path / "mine.npz").resolve())
    res = cli("train", "-m", "hydra/launcher=basic", "data=callable", "data.loader=my_loaders:get", "seed=0,1", *TRAIN,
              "hydra.sweep.dir=sw", "hydra.job.chdir=true")
    assert res.returncode == 0 and "2 jobs: 2 completed" in res.stdout, res.stdout + res.stderr
    res = cli("train", "data=mnist1d", "data.root=cache", "trainer.epochs=1", "hydra.run.dir=run3", "hydra.job.chdir=true")
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "cache" / "mnist1d").is_dir() and not (tmp_path / "run3" / "cache").exists()


def test_a_single_run_refused_at_its_data_leaves_no_run_folder(cli, tmp_path):
    """A loader that raises is found only once the run has started (preflight does not call it): the one-line
    refusal takes away the .hydra/, empty train.log and run.lock it left; a folder with records is kept."""
    (tmp_path / "flaky.py").write_text(
        "import os, numpy as np\n"
        "def get():\n"
        "    if os.path.exists('broken'):\n"
        "        raise ValueError('my loader broke')\n"
        "    return np.ones((90, 3), 'float32'), np.arange(90) % 2\n")
    (tmp_path / "broken").write_text("")
    res = cli("train", "data=callable", "data.loader=flaky:get", *TRAIN, "hydra.run.dir=run")
    assert res.returncode == 2 and res.stderr.strip() == (
        "regbench train: error: data.loader=flaky:get raised ValueError: my loader broke"), res.stderr
    assert not (tmp_path / "run").exists()
    (tmp_path / "mine").mkdir()  # a folder that was there before (the user's own, or the current one): kept
    res = cli("train", "data=callable", "data.loader=flaky:get", *TRAIN, "hydra.run.dir=mine")
    assert res.returncode == 2 and (tmp_path / "mine").is_dir()
    res = cli("train", "data=callable", "data.loader=flaky:get", *TRAIN, "hydra.run.dir=.", cwd=tmp_path / "mine")
    assert res.returncode == 2 and (tmp_path / "mine").is_dir()
    res = cli("train", "data=callable", "data.loader=flaky:get", *TRAIN)  # the default folder, stamped: taken away
    assert res.returncode == 2 and not list((tmp_path / "outputs" / "runs").glob("*/*"))

    from regbench.cli import NEW_RUN_DIR_ENV, STAMPED
    from regbench.train import _discard_unstarted

    for extra in ("summary.json", "metrics.csv", "notes.txt", None):  # a run's records, or anything else: kept
        folder = tmp_path / str(extra)
        (folder / ".hydra").mkdir(parents=True)
        for name in ("train.log", "run.lock", extra):
            if name:
                (folder / name).write_text("")
        os.environ[NEW_RUN_DIR_ENV] = STAMPED if extra else str(tmp_path / "another")  # None: not the folder made
        try:
            _discard_unstarted(folder)
        finally:
            del os.environ[NEW_RUN_DIR_ENV]
        assert sorted(p.name for p in folder.iterdir()) == sorted(filter(None, [".hydra", "train.log", "run.lock", extra]))
