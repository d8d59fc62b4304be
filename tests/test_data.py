import pickle
import time
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from regbench.data import CIFAR_FILES, DataError, build_dataset, corrupt_labels, standardize


def rows(x: torch.Tensor) -> set:
    return {tuple(r) for r in x.tolist()}


def test_splits_are_disjoint_and_sized(make_cfg):
    cfg = make_cfg("data.n_samples=500", "data.val_fraction=0.2", "data.test_fraction=0.1")
    d = build_dataset(cfg.data)
    assert (len(d.train), len(d.val), len(d.test)) == (360, 90, 50)
    train, val, test = rows(d.train.x), rows(d.val.x), rows(d.test.x)
    assert len(train) == 360 and not (train & val) and not (train & test) and not (val & test)
    assert d.train.x.dtype == torch.float32 and d.train.y.dtype == torch.int64


def test_standardization_uses_training_statistics_only(make_cfg):
    d = build_dataset(make_cfg("data.n_samples=500").data)
    assert torch.allclose(d.train.x.mean(0), torch.zeros(8), atol=1e-5)
    assert torch.allclose(d.train.x.std(0, unbiased=False), torch.ones(8), atol=1e-4)
    # the held-out sets went through the same affine map, so they are not exactly standardized
    assert not torch.allclose(d.val.x.mean(0), torch.zeros(8), atol=1e-3)
    raw = build_dataset(make_cfg("data.n_samples=500", "data.standardize=none").data)
    mean, std = raw.train.x.mean(0), raw.train.x.std(0, unbiased=False)
    assert torch.allclose(d.val.x, (raw.val.x - mean) / std, atol=1e-5)


def test_constant_feature_keeps_unit_std():
    x = torch.tensor([[1.0, 5.0], [3.0, 5.0]])
    mean, std = standardize(x, "feature")
    assert mean.tolist() == [2.0, 5.0] and std.tolist() == [1.0, 1.0]
    mean, std = standardize(x, "global")
    assert mean.item() == 3.5


def test_train_size_takes_a_subset_and_leaves_val_alone(make_cfg):
    full = build_dataset(make_cfg("data.n_samples=500").data)
    small = build_dataset(make_cfg("data.n_samples=500", "data.train_size=50").data)
    assert len(small.train) == 50 and len(small.val) == len(full.val)
    assert torch.equal(small.val.y, full.val.y)


def test_label_noise_rate_seeding_and_clean_labels(make_cfg):
    clean = build_dataset(make_cfg("data.n_samples=2000", "data.n_classes=4").data)
    a = build_dataset(make_cfg("data.n_samples=2000", "data.n_classes=4", "data.label_noise=0.4").data)
    b = build_dataset(make_cfg("data.n_samples=2000", "data.n_classes=4", "data.label_noise=0.4").data)
    c = build_dataset(make_cfg("data.n_samples=2000", "data.n_classes=4", "data.label_noise=0.4", "data.seed=1").data)
    assert torch.equal(a.train.y, b.train.y) and torch.equal(a.corrupted, b.corrupted)  # seeded
    assert not torch.equal(a.train.y, c.train.y)
    assert torch.equal(a.clean_y, clean.train.y)  # clean labels kept
    assert torch.equal(a.corrupted, a.train.y != a.clean_y)
    assert torch.equal(a.val.y, clean.val.y)  # only training labels are touched
    # 40% resampled uniformly over 4 classes: 3/4 of those change -> 30% corrupted
    assert a.corrupted.float().mean().item() == pytest.approx(0.30, abs=0.03)
    assert a.info()["n_corrupted"] == int(a.corrupted.sum())


def test_corrupt_labels_exact_count():
    y = torch.zeros(1000, dtype=torch.long)
    noisy, corrupted = corrupt_labels(y, 0.5, 10, torch.Generator().manual_seed(0))
    resampled = (noisy != 0).sum().item()
    assert corrupted.sum().item() == resampled <= 500
    assert resampled == pytest.approx(450, abs=40)  # 500 resampled, 9/10 land elsewhere


def test_no_label_noise_keeps_no_copies(make_cfg):
    d = build_dataset(make_cfg().data)
    assert d.clean_y is None and d.corrupted is None


def test_mnist1d_is_generated_offline_and_cached(make_cfg, data_root):
    d = build_dataset(make_cfg("data=mnist1d").data)
    assert (len(d.train), len(d.val), len(d.test)) == (3200, 800, 1000)
    assert d.n_features == 40 and d.n_classes == 10
    assert (data_root / "mnist1d" / "mnist1d_seed42.npz").exists()
    again = build_dataset(make_cfg("data=mnist1d").data)
    assert torch.equal(d.train.x, again.train.x)


def test_digits(make_cfg):
    d = build_dataset(make_cfg("data=digits").data)
    assert d.n_features == 64 and d.n_classes == 10
    assert len(d.train) + len(d.val) + len(d.test) == 1797


def test_teacher(make_cfg):
    d = build_dataset(make_cfg("data=teacher", "data.n_samples=400", "data.n_features=12", "data.n_classes=4").data)
    assert d.n_features == 12 and d.n_classes == 4 and int(d.train.y.max()) <= 3



def test_uint8_training_inputs_with_test_inputs_of_another_type_are_one_error(make_cfg, monkeypatch):
    """uint8 inputs are scaled to [0, 1] array by array: a loader giving uint8 training and int64 test pixels
    had its test set on a 255x larger scale, silently."""
    from regbench import data

    x = np.arange(60 * 4).reshape(60, 4) % 256
    mixed = lambda cfg: (x[:50].astype(np.uint8), np.arange(50) % 10, x[50:], np.arange(10) % 10)
    monkeypatch.setitem(data._LOADERS, "digits", mixed)
    with pytest.raises(DataError, match=r"data=digits: the training inputs are uint8 but the test inputs int64; "
                                        r"uint8 pixels are scaled to \[0, 1\], so both must be uint8 or neither"):
        build_dataset(make_cfg("data=digits").data)


# ----------------------------------------------------------- torchvision sets
# Tiny files in the real on-disk formats (IDX for the MNIST family, the python
# pickle batches for CIFAR-10), so the loaders are tested without a network.


def write_idx(path: Path, array: np.ndarray) -> None:
    code = 0x08  # unsigned byte
    with open(path, "wb") as fh:
        fh.write(struct.pack(">BBBB", 0, 0, code, array.ndim))
        fh.write(struct.pack(f">{array.ndim}I", *array.shape))
        fh.write(array.astype(np.uint8).tobytes())


def write_mnist_like(root: Path, folder: str, n_train=30, n_test=10) -> None:
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        write_idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10)


@pytest.mark.parametrize("name,folder", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST"), ("kmnist", "KMNIST")])
def test_mnist_family_reads_idx_files(make_cfg, tmp_path, name, folder):
    write_mnist_like(tmp_path, folder)
    d = build_dataset(make_cfg(f"data={name}", f"data.root={tmp_path}", "data.download=false").data)
    assert d.n_features == 784 and d.n_classes == 10
    assert (len(d.train), len(d.val), len(d.test)) == (24, 6, 10)
    assert torch.equal(d.test.y, torch.arange(10))
    assert abs(d.train.x.mean().item()) < 1e-5  # global standardization from training pixels


def test_cifar10_reads_python_batches(make_cfg, tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i, name in enumerate(CIFAR_FILES):
        batch = {b"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8), b"labels": [i, i, 9 - i, 1]}
        with open(folder / name, "wb") as fh:
            pickle.dump(batch, fh)
    d = build_dataset(make_cfg("data=cifar10", f"data.root={tmp_path}", "data.download=false").data)
    assert d.n_features == 3072 and len(d.test) == 4 and len(d.train) + len(d.val) == 20
    assert d.test.y.tolist() == [5, 5, 4, 1]


def test_cifar_batches_of_another_width_are_one_error(make_cfg, tmp_path):
    """Grey 32x32 batches (1024 values an example) trained without a word, recorded as data=cifar10."""
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in CIFAR_FILES:
        with open(folder / name, "wb") as fh:
            pickle.dump({b"data": np.zeros((4, 1024), dtype=np.uint8), b"labels": [0, 1, 2, 3]}, fh)
    with pytest.raises(DataError, match=r"data=cifar10: the training files in .*cifar-10-batches-py hold examples of 1024 "
                                        r"values, cifar10's have 3072 \(32x32 colour images, 3x1024 values\)"):
        build_dataset(make_cfg("data=cifar10", f"data.root={tmp_path}", "data.download=false").data)


@pytest.mark.parametrize("name,where", [("mnist", "MNIST/raw"), ("kmnist", "KMNIST/raw"), ("cifar10", "cifar-10-batches-py")])
def test_missing_offline_dataset_says_where_to_put_files(make_cfg, tmp_path, name, where):
    with pytest.raises(DataError) as err:
        build_dataset(make_cfg(f"data={name}", f"data.root={tmp_path}", "data.download=false").data)
    msg = str(err.value)
    assert "\n" not in msg and str(tmp_path / where) in msg and "put " in msg and "data.root" in msg


def test_corrupt_cifar_file_is_one_clear_error(make_cfg, tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in CIFAR_FILES:
        (folder / name).write_bytes(b"not a pickle")
    with pytest.raises(DataError, match="cannot read .*data_batch_1"):
        build_dataset(make_cfg("data=cifar10", f"data.root={tmp_path}", "data.download=false").data)


# ------------------------------------------------- what preflight knows of each set


def test_known_shapes_and_files_match_the_data(make_cfg):
    import torchvision.datasets as tvd

    from regbench.config import DATASET_FILES, dataset_shape

    for name in ("digits", "mnist1d"):
        cfg = make_cfg(f"data={name}")
        d = build_dataset(cfg.data)
        n_features, n_classes, n_train, n_test = dataset_shape(cfg.data)
        assert (n_features, n_classes) == (d.n_features, d.n_classes)
        held = len(d.test) if n_test is None else 0
        assert n_train == len(d.train) + len(d.val) + held and (n_test is None or n_test == len(d.test))
    for name, cls in (("mnist", tvd.MNIST), ("fashion_mnist", tvd.FashionMNIST), ("kmnist", tvd.KMNIST)):
        folder, files = DATASET_FILES[name]
        assert folder == f"{cls.__name__}/raw"
        assert list(files) == [Path(url).name.removesuffix(".gz") for url, _ in cls.resources]
    folder, files = DATASET_FILES["cifar10"]
    assert folder == tvd.CIFAR10.base_folder and list(files) == [f for f, _ in tvd.CIFAR10.train_list + tvd.CIFAR10.test_list]
    from regbench.config import DOWNLOAD_URLS  # the servers preflight asks before a download

    assert DOWNLOAD_URLS == {"mnist": tuple(tvd.MNIST.mirrors), "fashion_mnist": tuple(tvd.FashionMNIST.mirrors),
                             "kmnist": tuple(tvd.KMNIST.mirrors), "cifar10": (tvd.CIFAR10.url,)}


def test_a_test_split_that_leaves_too_little_names_test_fraction(make_cfg):
    from regbench.config import ConfigError

    with pytest.raises(ConfigError, match=r"^data.test_fraction=0.999 is not allowed here: it holds out 1795 of the 1797"):
        build_dataset(make_cfg("data=digits", "data.test_fraction=0.999").data)
    with pytest.raises(ConfigError, match=r"^data.val_fraction=0.0003 is not allowed here"):
        build_dataset(make_cfg("data=digits", "data.val_fraction=0.0003").data)


# ------------------------------------------------------------- mnist1d's cache


@pytest.fixture
def fake_mnist1d(monkeypatch):
    """mnist1d's generator replaced by a tiny one; counts its calls."""
    import mnist1d.data

    calls = []

    def make_dataset(args):
        calls.append(args.seed)
        rng = np.random.default_rng(0)
        return {"x": rng.normal(size=(50, 40)), "y": np.arange(50) % 10, "x_test": rng.normal(size=(10, 40)), "y_test": np.arange(10)}

    monkeypatch.setattr(mnist1d.data, "make_dataset", make_dataset)
    return calls


def test_mnist1d_cache_is_readable_by_everyone(make_cfg, tmp_path, fake_mnist1d):
    d = build_dataset(make_cfg("data=mnist1d", f"data.root={tmp_path / 'cache'}").data)
    assert len(d.test) == 10 and fake_mnist1d == [42]
    (path,) = (tmp_path / "cache" / "mnist1d").iterdir()  # no temporary file left beside it
    assert path.name == "mnist1d_seed42.npz" and path.stat().st_mode & 0o777 == 0o644


def test_mnist1d_root_that_cannot_be_written_is_one_line_before_generating(make_cfg, tmp_path, fake_mnist1d):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(DataError) as err:
        build_dataset(make_cfg("data=mnist1d", f"data.root={blocker / 'cache'}").data)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(f"data=mnist1d: cannot write its cache {blocker / 'cache'}")
    assert "set data.root to a writable folder" in msg
    assert fake_mnist1d == []  # refused before the generator ran


def test_mnist1d_cache_that_cannot_be_read_is_one_line(make_cfg, tmp_path):
    path = tmp_path / "mnist1d" / "mnist1d_seed42.npz"
    path.parent.mkdir()
    path.write_bytes(b"truncated")
    with pytest.raises(DataError, match="cannot read its cache .*remove it to generate it again"):
        build_dataset(make_cfg("data=mnist1d", f"data.root={tmp_path}").data)


# ------------------------------------------- a failed download leaves no empty folders


@pytest.mark.parametrize("name,cls", [("mnist", "MNIST"), ("cifar10", "CIFAR10")])
def test_failed_download_removes_only_the_empty_folders_it_made(make_cfg, tmp_path, monkeypatch, name, cls):
    import os

    import torchvision.datasets as tvd

    def offline(self):  # as torchvision does: make the folder, then fail to fetch
        os.makedirs(self.raw_folder if name == "mnist" else self.root, exist_ok=True)
        raise RuntimeError("no network")

    monkeypatch.setattr(getattr(tvd, cls), "download", offline)
    kept = tmp_path / "kept"
    kept.mkdir()
    for root in (kept, tmp_path / "new" / "deeper"):
        with pytest.raises(DataError, match="download failed"):
            build_dataset(make_cfg(f"data={name}", f"data.root={root}", "data.download=true").data)
    assert kept.is_dir() and not any(kept.iterdir())  # there before: kept; what it made inside: gone
    assert not (tmp_path / "new").exists()


# ------------------------------------------- processes side by side download a set once

# A process that loads MNIST with torchvision's download whose network step is
# replaced: it writes the unpacked IDX file slowly and notes what it fetched.
# The two processes start loading together (each waits for the other's "ready").
_LOADER = """
import sys, time
from pathlib import Path
import numpy as np
import torchvision.datasets.mnist as tv_mnist
sys.path.insert(0, sys.argv[4])
from test_data import write_idx
from regbench.api import compose
from regbench.data import build_dataset

root, fetched, me = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
rng = np.random.default_rng(0)
arrays = {"train-images-idx3-ubyte": rng.integers(0, 256, (30, 28, 28)), "train-labels-idx1-ubyte": np.arange(30) % 10,
          "t10k-images-idx3-ubyte": rng.integers(0, 256, (10, 28, 28)), "t10k-labels-idx1-ubyte": np.arange(10) % 10}

def fake_fetch(url, download_root, filename=None, md5=None, **kw):
    time.sleep(0.3)  # the network: long enough for the other process to look for the files too
    with open(fetched, "a") as fh:
        fh.write(filename + "\\n")
    write_idx(Path(download_root) / filename.removesuffix(".gz"), arrays[filename.removesuffix(".gz")])

tv_mnist.download_and_extract_archive = fake_fetch
cfg = compose(["data=mnist", f"data.root={root / 'data'}", "data.download=true"]).data
(root / f"ready-{me}").touch()
while len(list(root.glob("ready-*"))) < 2:
    time.sleep(0.01)
d = build_dataset(cfg)
print(len(d.train) + len(d.val) + len(d.test))
"""


def test_processes_side_by_side_download_a_set_once(tmp_path):
    """A sweep's workers (and commands typed side by side) each load the data:
    a missing torchvision set is fetched by one of them while the others wait,
    then read by all. Before, each downloaded the same files at once; one that
    opened a file another had begun writing truncated it under the other,
    whose checksum then failed."""
    import subprocess
    import sys

    fetched = tmp_path / "fetched.txt"
    here = str(Path(__file__).parent)
    procs = [subprocess.Popen([sys.executable, "-c", _LOADER, str(tmp_path), str(fetched), str(i), here],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert [o.strip().splitlines()[-1] for o, _ in outs] == ["40", "40"], outs
    names = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    assert sorted(fetched.read_text().split()) == sorted(f"{n}.gz" for n in names)  # each file fetched once


def test_a_set_that_is_there_is_read_without_waiting_for_a_fetch(make_cfg, tmp_path):
    """The fetch lock is taken only when files are missing: a set already in
    data.root is read while another process fetches into that root (here: the
    lock held by this test), without waiting and without saying it waits."""
    import threading

    from regbench.data import fetching

    write_mnist_like(tmp_path, "MNIST")
    cfg = make_cfg("data=mnist", f"data.root={tmp_path}", "data.download=true").data
    got = []
    with fetching(tmp_path, "data=mnist"):
        reader = threading.Thread(target=lambda: got.append(len(build_dataset(cfg).train)), daemon=True)
        reader.start()
        reader.join(timeout=30)
    assert got == [24]


@pytest.mark.parametrize("fault,message", [
    ("label 10", r"data=mnist: the training labels in .*MNIST/raw include 10, outside its classes 0-9 \(another set's files\?\)"),
    ("fewer labels", r"data=mnist: the test files in .*MNIST/raw hold 10 examples and 9 labels; put mnist's own files there"),
    # trained without a word and recorded as data=mnist
    ("7x7 images", r"data=mnist: the training files in .*MNIST/raw hold examples of 49 values, mnist's have 784 \(28x28 images\)"),
])
def test_files_of_another_set_are_one_error_not_a_traceback(make_cfg, tmp_path, fault, message):
    """MNIST-format files whose labels go past 9 (EMNIST's, put in MNIST/raw)
    or do not match the images in number trained into a traceback from the loss."""
    write_mnist_like(tmp_path, "MNIST")
    raw = tmp_path / "MNIST" / "raw"
    if fault == "label 10":
        write_idx(raw / "train-labels-idx1-ubyte", np.arange(30) % 11)
    elif fault == "7x7 images":
        write_idx(raw / "train-images-idx3-ubyte", np.zeros((30, 7, 7)))
    else:
        write_idx(raw / "t10k-labels-idx1-ubyte", np.arange(9) % 10)
    with pytest.raises(DataError, match=message):
        build_dataset(make_cfg("data=mnist", f"data.root={tmp_path}", "data.download=false").data)


def test_a_server_that_never_answers_fails_the_download_instead_of_hanging(make_cfg, tmp_path, monkeypatch):
    """A server or proxy that takes the connection and sends nothing: urllib
    waited forever, and a sweep sat silent. Here it fails after the stall
    timeout (shortened), as a failed download."""
    import socket

    import torchvision.datasets as tvd

    from regbench import data

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # connections are taken (the backlog) and never answered
        monkeypatch.setattr(tvd.MNIST, "mirrors", [f"http://127.0.0.1:{silent.getsockname()[1]}/"])
        monkeypatch.setattr(data, "DOWNLOAD_STALL_S", 0.3)
        for var in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
            monkeypatch.delenv(var, raising=False)
        start = time.monotonic()
        with pytest.raises(DataError, match="download failed"):
            build_dataset(make_cfg("data=mnist", f"data.root={tmp_path}", "data.download=true").data)
        assert time.monotonic() - start < 20
    assert socket.getdefaulttimeout() is None  # put back


@pytest.mark.parametrize("download", ["true", "false"])
def test_damaged_files_are_named_as_unreadable_not_missing(make_cfg, tmp_path, download):
    """Four zero-byte IDX files: they are there, so no download was tried; the
    error said "dataset not found ... and download failed"."""
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for f in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (raw / f).write_bytes(b"")
    with pytest.raises(DataError, match=rf"data=mnist: cannot read its files in {raw} \(\w+"):
        build_dataset(make_cfg("data=mnist", f"data.root={tmp_path}", f"data.download={download}").data)


@pytest.mark.parametrize("name", ["mnist", "cifar10"])
def test_a_failed_download_leaves_no_archive_that_is_not_the_set(make_cfg, tmp_path, monkeypatch, name):
    """A server or proxy that answers every request with a page of its own
    (a captive portal, a proxy's error page, status 200): torchvision saved it
    as the .gz and its checksum failed. The archive stayed, and a later offline
    run took it for the set's own. Now what the failed download wrote is
    removed; an archive that was there before and that it did not touch stays."""
    import http.server
    import threading

    import torchvision.datasets as tvd

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = b"<html>the proxy says no</html>"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    for var in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    if name == "mnist":
        monkeypatch.setattr(tvd.MNIST, "mirrors", [url])
        folder = tmp_path / "MNIST" / "raw"
        kept = folder / "t10k-labels-idx1-ubyte.gz"  # there before, not the set's: torchvision fetches it again
    else:
        monkeypatch.setattr(tvd.CIFAR10, "url", url + "cifar-10-python.tar.gz")
        folder, kept = tmp_path, None
    try:
        for attempt in range(2):
            if kept is not None and attempt == 1:
                folder.mkdir(parents=True, exist_ok=True)
                kept.write_bytes(b"someone's own file")
                # a download of the other files fails first; this one is left as it was
                monkeypatch.setattr(tvd.MNIST, "resources", [r for r in tvd.MNIST.resources if not r[0].startswith("t10k-labels")]
                                    + [r for r in tvd.MNIST.resources if r[0].startswith("t10k-labels")])
            # a user's own archive that fails the checksum is named (it read as the set missing)
            says = "t10k-labels-idx1-ubyte.gz in .* fails the set's MD5 check" if kept is not None and attempt == 1 else "download failed"
            with pytest.raises(DataError, match=says):
                build_dataset(make_cfg(f"data={name}", f"data.root={tmp_path}", "data.download=true").data)
            left = sorted(p.name for p in tmp_path.rglob("*") if p.is_file())
            assert left == ([kept.name] if kept is not None and attempt == 1 else []), left
    finally:
        server.shutdown()
        server.server_close()
