"""Datasets as tensors on the training device, split into train / val / test.

Every set is loaded whole into memory: the MLPs regbench studies are bound by
per-step overhead, so batches are indexed from tensors already on the device
(see ``train.py``) instead of going through a DataLoader.

Order of operations, all seeded by ``data.seed`` (never the run seed, so that
seeds vary only initialization, dropout masks and batch order):
raw train/test -> validation split -> training subset -> label noise ->
standardization with training statistics only -> device.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from . import locks, userdata
from .provenance import from_launch_dir
from .config import CIFAR_FILES, DATASET_FILES, DATASET_SHAPES, MNIST1D_SEED, split_sizes  # noqa: F401 (MNIST1D_SEED: re-exported)


log = logging.getLogger(__name__)


class DataError(RuntimeError):
    """A dataset cannot be had (missing offline, unreadable); one line, says where to put files."""


@dataclass
class Split:
    x: torch.Tensor  # (N, D) float32
    y: torch.Tensor  # (N,) int64

    def __len__(self) -> int:
        return len(self.y)


@dataclass
class Dataset:
    name: str
    train: Split  # labels as trained on (corrupted where label noise applies)
    val: Split
    test: Optional[Split]
    n_features: int
    n_classes: int
    clean_y: Optional[torch.Tensor] = None  # (N_train,) original labels, only with label noise
    corrupted: Optional[torch.Tensor] = None  # (N_train,) bool, label differs from the clean one
    n_corrupted: int = 0  # corrupted.sum(), known on the host
    source: Optional[dict] = None  # the user's data: where it came from and a fingerprint of its contents

    def info(self) -> dict:
        return {
            "name": self.name,
            "n_train": len(self.train),
            "n_val": len(self.val),
            "n_test": len(self.test) if self.test is not None else 0,
            "n_features": self.n_features,
            "n_classes": self.n_classes,
            "n_corrupted": self.n_corrupted,
            **(self.source or {}),
        }


def _root(cfg) -> Path:
    return from_launch_dir(str(cfg.root))


# ---------------------------------------------------------------- raw loaders
# Each returns (x_train, y_train, x_test, y_test) as numpy; x_test may be None
# for sets without an official test split.


def _missing_dirs(folder: Path) -> list[Path]:
    """The folders on the way to ``folder`` that do not exist yet, deepest first."""
    missing = []
    while not os.path.lexists(folder) and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing


DOWNLOAD_STALL_S = 60.0  # a download whose server (or proxy) sends nothing this long fails instead of hanging


@contextlib.contextmanager
def fetching(root: Path, what: str):
    """Held while a set that may have to be downloaded is looked for in and
    fetched into ``root``.

    - One process at a time: a sweep's workers (the fused launcher's,
      joblib's) and commands typed side by side fetch it once, one after the
      other, and the others then read it. Without it each downloaded the same
      files at once, and one that opened a file another had begun writing
      truncated it under the other, whose checksum then failed. Keyed by
      ``root``'s real path (regbench.locks: a file in the temporary folder, as
      ``root`` may not exist yet and a failed download leaves nothing behind).
    - torchvision's downloads (urllib) waited forever on a server or proxy
      that takes the connection and never answers (a sweep sat silent): here a
      socket that receives nothing for ``DOWNLOAD_STALL_S`` fails."""
    import socket

    with locks.one_at_a_time(f"fetch {os.path.realpath(root)}",
                             f"waiting for another process that is fetching {what} into {root}", log):
        before = socket.getdefaulttimeout()
        socket.setdefaulttimeout(DOWNLOAD_STALL_S)
        try:
            yield
        finally:
            socket.setdefaulttimeout(before)


def _signatures(paths: list[Path]) -> dict:
    """What is at each path now: (size, mtime) or None, to tell what a download wrote."""
    out = {}
    for path in paths:
        try:
            st = path.stat()
            out[path] = (st.st_size, st.st_mtime_ns)
        except OSError:
            out[path] = None
    return out


@contextlib.contextmanager
def _dropped_if_failed(md5s: dict):
    """Around a download, inside its fetch lock (else a process that takes the
    lock next may be writing them): when it fails, remove the archives it
    wrote (new, or changed since it began) that fail their checksum: a
    proxy's or server's error page saved as the .gz, a file cut short. Left
    there, a later offline run took them for the set's archives (preflight
    does not ask the servers then) and failed the same way. Archives that were
    there before and untouched stay, whatever they hold."""
    from torchvision.datasets.utils import check_integrity

    before = _signatures(list(md5s))
    try:
        yield
    except BaseException:
        for path, sig in _signatures(list(md5s)).items():
            if sig is not None and sig != before[path] and not check_integrity(str(path), md5s[path]):
                try:
                    path.unlink()
                except OSError:
                    pass
        raise


def _remove_empty(created: list[Path]) -> None:
    """Undo the folders a failed attempt created (deepest first), where they are still empty."""
    for folder in created:
        try:
            folder.rmdir()
        except FileNotFoundError:
            continue  # the attempt did not get this far
        except OSError:
            return  # not empty (or not ours to remove): it and its parents stay


def _mnist1d(cfg):
    sub, (name,) = DATASET_FILES["mnist1d"]
    path = _root(cfg) / sub / name
    if not path.exists():
        created = _missing_dirs(path.parent)
        tmp = None
        try:
            # Room for the cache first: generating takes seconds, and a data.root that
            # cannot take it should say so before, not after.
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{name}.", suffix=".tmp")
            with os.fdopen(fd, "wb") as fh:
                from mnist1d.data import get_dataset_args, make_dataset

                args = get_dataset_args()
                args.seed = MNIST1D_SEED
                # make_dataset reseeds numpy's and random's global state: the run seeds
                # its generators after the data is built.
                d = make_dataset(args)
                np.savez(fh, x=d["x"], y=d["y"], x_test=d["x_test"], y_test=d["y_test"])
            os.chmod(tmp, 0o644)  # mkstemp makes it private; the cache is for every user of data.root
            os.replace(tmp, path)  # atomic: parallel jobs never read half a file
            tmp = None
        except BaseException as exc:
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)
            _remove_empty(created)
            if isinstance(exc, OSError):
                raise DataError(
                    f"data=mnist1d: cannot write its cache {path} ({exc.strerror or exc}); MNIST-1D is generated "
                    f"into data.root on first use: set data.root to a writable folder, or to one that holds {sub}/{name}"
                ) from None
            raise
    try:
        with np.load(path) as f:
            return f["x"], f["y"], f["x_test"], f["y_test"]
    except Exception as exc:
        raise DataError(
            f"data=mnist1d: cannot read its cache {path} ({type(exc).__name__}: {exc}); remove it to generate it again"
        ) from None


def _digits(cfg):
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    return x, y, None, None


def _blobs(cfg):
    g = torch.Generator().manual_seed(cfg.seed)
    centres = torch.randn(cfg.n_classes, cfg.n_features, generator=g)  # (C, D)
    y = torch.randint(cfg.n_classes, (cfg.n_samples,), generator=g)
    x = centres[y] + cfg.noise * torch.randn(cfg.n_samples, cfg.n_features, generator=g)
    return x.numpy(), y.numpy(), None, None


def _teacher(cfg):
    g = torch.Generator().manual_seed(cfg.seed)
    d, h, c = cfg.n_features, max(2 * cfg.n_features, 64), cfg.n_classes
    x = torch.randn(cfg.n_samples, d, generator=g)  # (N, D)
    w1 = torch.randn(d, h, generator=g) / d**0.5
    w2 = torch.randn(h, c, generator=g) / h**0.5
    logits = torch.tanh(x @ w1) @ w2  # (N, C)
    logits = logits / logits.std() + cfg.noise * torch.randn(logits.shape, generator=g)
    return x.numpy(), logits.argmax(1).numpy(), None, None


SYNTHETIC = ("blobs", "teacher")  # sizes come from the config; every other set has 10 classes

_TORCHVISION = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST", "kmnist": "KMNIST"}


def _torchvision_images(cfg):
    """MNIST-format sets, read by torchvision from ``<root>/<Class>/raw``."""
    import torchvision.datasets as tvd

    cls = getattr(tvd, _TORCHVISION[cfg.name])
    root = _root(cfg)
    raw = root / cls.__name__ / "raw"
    files = [Path(url).name.removesuffix(".gz") for url, _ in cls.resources]
    created = _missing_dirs(raw)
    missing = cfg.download and not all((raw / f).is_file() for f in files)  # what torchvision's _check_exists asks
    archives = {raw / Path(url).name: md5 for url, md5 in cls.resources}
    try:
        with fetching(root, f"data={cfg.name}") if missing else contextlib.nullcontext(), \
                _dropped_if_failed(archives) if missing else contextlib.nullcontext():
            tr = cls(str(root), train=True, download=cfg.download)  # downloads only what is still missing then
            te = cls(str(root), train=False, download=cfg.download)
    except Exception as exc:  # RuntimeError when missing, URLError etc. offline
        _remove_empty(created)  # e.g. an empty MNIST/raw left by a download that could not start
        if all((raw / f).is_file() for f in files):  # there, but not readable as the set: no download was tried
            detail = (str(exc).splitlines() or [""])[0][:200]
            raise DataError(
                f"data={cfg.name}: cannot read its files in {raw} ({type(exc).__name__}: {detail}); "
                f"{', '.join(files)} must be the set's own IDX files (unpacked): put them there again, or remove them "
                + ("to download them again" if cfg.download else "and put the set's files there")
            ) from None
        if cfg.download:  # .gz files put there that are not the set's: torchvision fetched them again, and that failed
            from torchvision.datasets.utils import check_integrity

            bad = [a.name for a, md5 in archives.items() if a.is_file() and not check_integrity(str(a), md5)]
            if bad:
                raise DataError(
                    f"data={cfg.name}: {', '.join(bad)} in {raw} fail{'s' if len(bad) == 1 else ''} the set's MD5 check "
                    f"(damaged, or not the original file) and the download failed ({type(exc).__name__}); replace "
                    f"{'it' if len(bad) == 1 else 'them'} with the set's original .gz, or put the unpacked IDX files there"
                ) from None
        raise DataError(
            f"data={cfg.name}: dataset not found in {raw} and "
            + ("download failed" if cfg.download else "data.download=false")
            + f" ({type(exc).__name__}); put {', '.join(files)} there"
            + (" (IDX format; the original .gz files are also accepted, checked and unpacked)" if cfg.download
               else " (IDX format, unpacked: with data.download=false the .gz files are not read)")
            + f", or set data.root to the folder that holds {cls.__name__}/raw"
        ) from None
    flat = lambda t: t.reshape(len(t), -1).numpy()  # (N, 28*28) uint8
    return flat(tr.data), tr.targets.numpy(), flat(te.data), te.targets.numpy()


def _cifar10(cfg):
    """CIFAR-10 in its python pickle format under ``<root>/cifar-10-batches-py``.

    Read here rather than by torchvision's class, whose md5 check of the whole
    archive makes the loader untestable on tiny files; torchvision only downloads.
    """
    root = _root(cfg)
    folder = root / "cifar-10-batches-py"
    if not all((folder / f).exists() for f in CIFAR_FILES):
        err = "data.download=false"
        if cfg.download:
            created = _missing_dirs(folder)
            import torchvision.datasets as tvd

            archive = {root / tvd.CIFAR10.filename: tvd.CIFAR10.tgz_md5}
            try:
                with fetching(root, "data=cifar10"), _dropped_if_failed(archive):
                    if not all((folder / f).exists() for f in CIFAR_FILES):  # else another process fetched it meanwhile
                        tvd.CIFAR10(str(root), train=True, download=True)
                err = ""
            except Exception as exc:
                _remove_empty(created)
                err = f"download failed ({type(exc).__name__})"
        if err:
            raise DataError(
                f"data=cifar10: dataset not found in {folder} and {err}; put "
                f"{', '.join(CIFAR_FILES)} (the python version, cifar-10-python.tar.gz, unpacked) "
                "there, or set data.root to the folder that holds cifar-10-batches-py"
            )

    def read(names):
        xs, ys = [], []
        for name in names:
            try:
                with open(folder / name, "rb") as fh:
                    batch = pickle.load(fh, encoding="bytes")
                xs.append(np.asarray(batch[b"data"], dtype=np.uint8))  # (n, 3*32*32)
                ys.append(np.asarray(batch[b"labels"], dtype=np.int64))
            except Exception as exc:
                raise DataError(f"data=cifar10: cannot read {folder / name}: {exc}") from None
        return np.concatenate(xs), np.concatenate(ys)

    x, y = read(CIFAR_FILES[:-1])
    x_test, y_test = read(CIFAR_FILES[-1:])
    return x, y, x_test, y_test


_LOADERS = {
    "mnist1d": _mnist1d,
    "digits": _digits,
    "blobs": _blobs,
    "teacher": _teacher,
    "mnist": _torchvision_images,
    "fashion_mnist": _torchvision_images,
    "kmnist": _torchvision_images,
    "cifar10": _cifar10,
    "file": lambda cfg: _user(cfg),
    "callable": lambda cfg: _user(cfg),
}


def _user(cfg):
    """data=file / data=callable (regbench/userdata.py): checked arrays or one DataError line."""
    try:
        return userdata.load(cfg)
    except userdata.UserDataError as exc:
        raise DataError(str(exc)) from None


# ---------------------------------------------------------------- transforms


def _as_tensors(x, y):
    x = torch.as_tensor(np.asarray(x))
    if x.dtype == torch.uint8:  # images: pixels to [0, 1]
        x = x.float() / 255.0
    return x.float().reshape(len(x), -1), torch.as_tensor(np.asarray(y)).long()


def corrupt_labels(y: torch.Tensor, fraction: float, n_classes: int, g: torch.Generator):
    """Resample ``round(fraction * N)`` labels uniformly over all classes.

    A resampled label may by chance equal the clean one (as in Zhang et al.
    2017's "partially corrupted labels"); ``corrupted`` marks those that differ.
    Returns (noisy labels, corrupted mask).
    """
    n = len(y)
    idx = torch.randperm(n, generator=g)[: round(fraction * n)]
    noisy = y.clone()
    noisy[idx] = torch.randint(n_classes, (len(idx),), generator=g)
    return noisy, noisy != y


def standardize(train_x: torch.Tensor, mode: str):
    """(mean, std) from the training inputs only; constant features keep std 1."""
    if mode == "none":
        return torch.zeros(()), torch.ones(())
    if mode == "global":
        mean, std = train_x.mean(), train_x.std(unbiased=False)
    else:
        mean, std = train_x.mean(0), train_x.std(0, unbiased=False)
    return mean, torch.where(std > 1e-6, std, torch.ones_like(std))


_IMAGE = {784: "28x28 images", 3072: "32x32 colour images, 3x1024 values", 40: "length-40 signals"}


def _check_files_read(cfg, n_classes: int, parts) -> None:
    """A set read from files in data.root, which anyone may have put there (the
    files of another set, a hand-made subset): as many labels as examples, and
    labels among the set's classes (either gave a traceback from the loss), and
    examples of the set's size (7x7 images in MNIST/raw trained, recorded as
    data=mnist)."""
    where = _root(cfg) / DATASET_FILES[cfg.name][0]
    width = DATASET_SHAPES[cfg.name][0]
    for part, xs, ys in parts:
        if xs is None:
            continue
        if len(xs) and xs.size // len(xs) != width:
            raise DataError(f"data={cfg.name}: the {part} files in {where} hold examples of {xs.size // len(xs)} "
                            f"values, {cfg.name}'s have {width} ({_IMAGE[width]}); put {cfg.name}'s own files there")
        ys = np.asarray(ys)
        if len(xs) != len(ys):
            raise DataError(f"data={cfg.name}: the {part} files in {where} hold {len(xs)} examples and {len(ys)} labels; "
                            f"put {cfg.name}'s own files there")
        outside = ys[(ys < 0) | (ys >= n_classes)]
        if len(outside):
            raise DataError(f"data={cfg.name}: the {part} labels in {where} include {int(outside[0])}, outside its "
                            f"classes 0-{n_classes - 1} (another set's files?); put {cfg.name}'s own files there")


def _check_classes_trained(cfg, y_given: torch.Tensor, train_y: torch.Tensor, n_classes: int) -> None:
    """Every class of the user's labels in the training split: the split (and
    data.train_size) draw by data.seed, so a rare class could land only in the
    validation or test split, and the model would be scored on a class it never saw."""
    lacking = np.setdiff1d(np.arange(n_classes), torch.unique(train_y).numpy())
    if not len(lacking):
        return
    counts = torch.bincount(y_given, minlength=n_classes).numpy()
    first = int(lacking[0])
    held = f"{int(counts[first])} example{'s' if counts[first] != 1 else ''}"
    raise DataError(
        f"data={cfg.name}: class {first} ({held}) is not in the training split drawn by data.seed={cfg.seed}"
        f"{f' ({len(lacking)} classes lack one)' if len(lacking) > 1 else ''}; every class needs training examples: "
        "give more examples of it, a larger data.train_size, another data.seed, or drop that class")


def build_dataset(cfg, device: torch.device | str = "cpu") -> Dataset:
    """Load, split, subset, corrupt and standardize ``cfg`` (a DataConfig), on ``device``."""
    x, y, x_test, y_test = _LOADERS[cfg.name](cfg)
    source = None
    if cfg.name in userdata.USER_DATASETS:
        n_classes = userdata.n_classes(np.asarray(y), None if y_test is None else np.asarray(y_test))
        source = userdata.source(cfg, x, y, x_test, y_test)  # the report tells different data apart by it
    else:
        n_classes = cfg.n_classes if cfg.name in SYNTHETIC else 10
        if cfg.name in DATASET_FILES:
            _check_files_read(cfg, n_classes, (("training", x, y), ("test", x_test, y_test)))
    if x_test is not None and (np.asarray(x).dtype == np.uint8) != (np.asarray(x_test).dtype == np.uint8):
        # _as_tensors scales uint8 alone to [0, 1]: the test set would be on another scale than training's
        raise DataError(f"data={cfg.name}: the training inputs are {np.asarray(x).dtype} but the test inputs "
                        f"{np.asarray(x_test).dtype}; uint8 pixels are scaled to [0, 1], so both must be uint8 or neither")
    x, y = _as_tensors(x, y)
    y_given = y  # before a test set is held out of it
    g = torch.Generator().manual_seed(cfg.seed)

    # sizes first (ConfigError naming the fraction that leaves a split empty), then the same draws as always
    n_train, n_val, n_test = split_sizes(cfg, len(y), has_test=x_test is not None)
    if x_test is None and n_test > 0:  # hold out a test set from the whole
        perm = torch.randperm(len(y), generator=g)
        x_test, y_test = x[perm[:n_test]], y[perm[:n_test]]
        x, y = x[perm[n_test:]], y[perm[n_test:]]
    elif x_test is not None:
        x_test, y_test = _as_tensors(x_test, y_test)

    perm = torch.randperm(len(y), generator=g)
    val_idx, train_idx = perm[:n_val], perm[n_val:][:n_train]
    train_x, train_y = x[train_idx], y[train_idx]
    if cfg.name in userdata.USER_DATASETS:  # each class must be learnable: a class drawn only into val/test was not
        _check_classes_trained(cfg, y_given, train_y, n_classes)

    clean_y = corrupted = None
    if cfg.label_noise > 0:
        clean_y = train_y
        train_y, corrupted = corrupt_labels(train_y, cfg.label_noise, n_classes, g)

    mean, std = standardize(train_x, cfg.standardize)
    to = lambda t: t.to(device)
    split = lambda xs, ys: Split(to((xs - mean) / std), to(ys))
    return Dataset(
        name=cfg.name,
        train=split(train_x, train_y),
        val=split(x[val_idx], y[val_idx]),
        test=split(x_test, y_test) if x_test is not None else None,
        n_features=x.shape[1],
        n_classes=n_classes,
        clean_y=to(clean_y) if clean_y is not None else None,
        corrupted=to(corrupted) if corrupted is not None else None,
        n_corrupted=int(corrupted.sum()) if corrupted is not None else 0,
        source=source,
    )
