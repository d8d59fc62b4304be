"""The user's own data: ``data=file`` and ``data=callable``.

- ``data=file data.path=PATH``: a ``.npz`` with arrays ``x`` (N, ...) and
  ``y`` (N,), optionally ``x_test`` and ``y_test``; a ``.csv`` whose column
  ``data.target`` holds the labels and every other column is a numeric
  feature; a ``.parquet`` file, the same way (needs pyarrow).
- ``data=callable data.loader=pkg.module:function``: the function is called
  with no arguments and returns ``(x, y)``, ``(x, y, x_test, y_test)`` or a
  dict with those keys (anything ``numpy.asarray`` takes).

Labels are integer classes 0..C-1; features are finite numbers, uint8 ones
(pixels) scaled to [0, 1], so ``x`` and ``x_test`` are both uint8 or neither.
What comes back goes through the same split, ``train_size``, ``label_noise``
and standardization as the built-in sets (regbench.data). Every defect is one
``UserDataError`` line that says what is wrong and what is allowed.

numpy and pandas only, no torch: regbench.preflight reads a file before Hydra
writes anything, and its size feeds the split and memory checks.
"""

from __future__ import annotations

import functools
import importlib
import os
import re
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Optional

import numpy as np

from . import records
from .provenance import from_launch_dir, launch_dir

USER_DATASETS = ("file", "callable")
SUFFIXES = (".npz", ".csv", ".parquet")
LOADER = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")
NPZ_HELP = "a .npz needs arrays x (N, features...) and y (N,), optionally x_test and y_test"


class UserDataError(ValueError):
    """The user's data cannot be used; one line."""


Arrays = tuple[np.ndarray, np.ndarray, Optional[np.ndarray], Optional[np.ndarray]]


def load(d: Any) -> Arrays:
    """(x, y, x_test, y_test) of a ``data=file`` or ``data=callable`` config,
    checked: x float (N, D), y int64 (N,), the test pair or None."""
    if d.name == "file":
        return _read_file(str(d.path) if d.path is not None else "", d.target)
    return _check(*_call(d.loader), source=f"data.loader={d.loader}")


def n_classes(y: np.ndarray, y_test: Optional[np.ndarray]) -> int:
    """Classes 0..max label (of both splits)."""
    return int(max(y.max(), y_test.max() if y_test is not None and len(y_test) else 0)) + 1


def source(d: Any, x: np.ndarray, y: np.ndarray, x_test: Optional[np.ndarray], y_test: Optional[np.ndarray]) -> dict:
    """Where the data came from (``path``: the file, absolute; or ``loader``) and
    ``fingerprint``: SHA-256 of the checked arrays (dtype, shape and bytes of x,
    y, x_test, y_test), its first 16 hex digits. Runs on the same path with
    other contents, or on different files, differ in it: the report refuses
    to average them together."""
    import hashlib

    h = hashlib.sha256()
    for a in (x, y, x_test, y_test):
        if a is None:
            h.update(b"none")
            continue
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(memoryview(a).cast("B"))
    where = {"path": str(_path(str(d.path)).resolve())} if d.name == "file" else {"loader": str(d.loader)}
    return {**where, "fingerprint": h.hexdigest()[:16]}


def changed_since(summary: dict, out: Path) -> str:
    """For a completed job of ``data=file`` (its ``summary``, in folder ``out``):
    where the file was changed after the job's records and now holds other data
    (another fingerprint), the words that say so after "already completed";
    else "". The job is still skipped, its records kept, but no longer as if
    they were the new data's. The file is read only where it is newer than
    summary.json (a stat otherwise). A loader (``data=callable``) is not
    called again for this."""
    data = summary.get("data") or {}
    was, path = data.get("fingerprint"), data.get("path")
    if data.get("name") != "file" or not was or not path:
        return ""
    try:
        if Path(path).stat().st_mtime_ns <= (Path(out) / records.SUMMARY_FILE).stat().st_mtime_ns:
            return ""
        st = Path(path).stat()
        now = _fingerprint_now(path, st.st_mtime_ns, st.st_size, (summary.get("config") or {}).get("data.target"))
    except (OSError, ValueError):
        return ""  # unreadable now: a job that trains on it says so
    if now == was:
        return ""
    return (f", on other data: {path} has changed since (fingerprint {was}, now {now}); its records are of the old "
            "contents: train into another folder for the new ones")


@functools.lru_cache(maxsize=8)
def _fingerprint_now(path: str, mtime_ns: int, size: int, target: Optional[str]) -> str:
    """The fingerprint of the file as it is (keyed by its mtime and size): read
    once per process, not once per skipped job of a sweep."""
    d = SimpleNamespace(name="file", path=path, target=target)
    return source(d, *load(d))["fingerprint"]


def shape(d: Any) -> Optional[tuple[int, int, int, Optional[int]]]:
    """(features, classes, training examples, test examples or None) of a file,
    read once per file version; None for a callable (known only once called)."""
    if d.name != "file":
        return None
    text = str(d.path) if d.path is not None else ""
    stat = _path(text).stat()
    return _shape(text, str(_path(text)), stat.st_mtime_ns, stat.st_size, d.target)


@functools.lru_cache(maxsize=8)
def _shape(text: str, path: str, mtime_ns: int, size: int, target: Optional[str]) -> tuple[int, int, int, Optional[int]]:
    """(``path``: the file ``text`` names, so that the cache tells two folders' files of one name apart.)"""
    x, y, x_test, y_test = _read_file(text, target)
    return x.shape[1], n_classes(y, y_test), len(y), (len(y_test) if y_test is not None else None)


def check_loader(spec: Optional[str]) -> None:
    """That ``data.loader`` names a function that can be imported (without calling it)."""
    _function(spec)


# ---------------------------------------------------------------- files


def _path(text: str) -> Path:
    if not text:
        raise UserDataError(f"data=file needs data.path=PATH: a {', '.join(SUFFIXES)} file")
    path = from_launch_dir(text)
    if not path.is_file():
        what = "a folder" if path.is_dir() else "not a regular file: a pipe, socket or device" if path.exists() else "not found"
        raise UserDataError(f"data.path={text}: no such file ({what}); give a {', '.join(SUFFIXES)} file")
    if path.suffix.lower() not in SUFFIXES:
        raise UserDataError(f"data.path={text}: {path.suffix or 'no suffix'} is not a format regbench reads; "
                            f"allowed: {', '.join(SUFFIXES)}")
    if path.stat().st_size == 0:  # it said "not a zip archive", or pandas' "No columns to parse from file"
        raise UserDataError(f"data.path={text}: the file is empty (0 bytes)")
    return path


def _read_file(text: str, target: Optional[str]) -> Arrays:
    path = _path(text)
    source = f"data.path={text}"
    suffix = path.suffix.lower()
    if suffix == ".npz":
        if target not in (None, "", "y"):  # a table's option: a .npz's labels are its array y
            raise UserDataError(f"{source}: data.target={target} names a column of a .csv/.parquet table; "
                                "a .npz's labels are its array y (drop data.target, or rename that array y)")
        with open(path, "rb") as fh:
            head = fh.read(4)
        if head[:2] != b"PK":  # np.load reads anything else as a pickle, and says so
            what = "a .npy array" if head[:4] == b"\x93NUM" else "not a zip archive"
            raise UserDataError(f"{source}: not a .npz ({what}); {NPZ_HELP}")
        try:
            with np.load(path, allow_pickle=False) as f:
                arrays = {k: f[k] for k in f.files}
        except Exception as exc:
            raise UserDataError(f"{source}: not a readable .npz ({type(exc).__name__}: {_first(exc)})") from None
        missing = [k for k in ("x", "y") if k not in arrays]
        if missing:
            raise UserDataError(f"{source}: no array {' or '.join(missing)} (it has {', '.join(arrays) or 'none'}); "
                                f"{NPZ_HELP}")
        if ("x_test" in arrays) != ("y_test" in arrays):
            raise UserDataError(f"{source}: x_test and y_test come together (it has only "
                                f"{'x_test' if 'x_test' in arrays else 'y_test'}); {NPZ_HELP}")
        return _check(arrays["x"], arrays["y"], arrays.get("x_test"), arrays.get("y_test"), source)
    import pandas as pd

    try:
        if suffix == ".csv":
            frame = pd.read_csv(path)
        else:
            frame = pd.read_parquet(path)
    except ImportError:
        raise UserDataError(f"{source}: reading .parquet needs pyarrow: pip install pyarrow "
                            "(or save the table as .csv)") from None
    except UnicodeDecodeError:
        raise UserDataError(f"{source}: not UTF-8 text (a .csv is read as UTF-8; save it as UTF-8, e.g. from "
                            "Latin-1 or cp1252)") from None
    except Exception as exc:
        raise UserDataError(f"{source}: not a readable {suffix} table ({type(exc).__name__}: {_first(exc)})") from None
    columns = [str(c).strip() for c in frame.columns]  # "a, b, label": its last column is label, not " label"
    if suffix == ".csv" and len(columns) == 1 and any(sep in columns[0] for sep in (";", "\t", "|")):
        sep = next(repr(sep) for sep in (";", "\t", "|") if sep in columns[0])
        raise UserDataError(f"{source}: its header is one column ({_names(columns, 1)}), split by {sep}; a .csv is "
                            "read with commas between columns: save it comma-separated")
    if suffix == ".csv":
        names = _header(path) or columns  # as written: pandas renames a repeated 0 to 0.1
        if names and all(_is_number(c) for c in names) and target not in names:  # before the names' own checks
            raise UserDataError(f"{source}: its first line holds numbers ({_names(names, 4)}), not column names; "
                                "a .csv needs a header row naming its columns (one of them data.target)")
        _check_header(names, source, target)
    if not target:
        raise UserDataError(f"{source}: a table needs data.target=<label column>; its columns: {_names(columns)}")
    if target not in columns:
        raise UserDataError(f"{source}: data.target={target} is not a column; its columns: {_names(columns)}")
    if not len(frame):
        raise UserDataError(f"{source}: the table has a header but no rows")
    frame.columns = columns
    features = frame.drop(columns=[target])
    text_cols = [c for c in features.columns if not pd.api.types.is_numeric_dtype(features[c])
                 or pd.api.types.is_bool_dtype(features[c])]
    if text_cols:
        raise UserDataError(f"{source}: feature column{'s' if len(text_cols) > 1 else ''} {_names(text_cols)} "
                            "not numeric; every column but data.target must hold numbers (encode categories first)")
    if features.shape[1] == 0:
        raise UserDataError(f"{source}: no feature column besides data.target={target}")
    return _check(features.to_numpy(), frame[target].to_numpy(), None, None, source, y_name=f"column {target}")


def _header(path: Path) -> list[str]:
    """A .csv's header names as written (the first row that is not blank, as
    pandas skips blank lines), stripped; [] where it cannot be read."""
    import csv

    try:
        with open(path, newline="", encoding="utf-8-sig", errors="replace") as fh:
            for row in csv.reader(fh):
                if any(cell.strip() for cell in row):
                    return [n.strip() for n in row]
    except (OSError, csv.Error):
        pass  # pandas read it; nothing more to say
    return []


def _check_header(names: list[str], source: str, target: Optional[str]) -> None:
    """A .csv header's names as written: pandas renames a repeated name (the
    second ``label`` becomes a feature column ``label.1``: the answer among the
    inputs) and names an empty one ``Unnamed: 0`` (a DataFrame's index written
    by ``to_csv()``, or a trailing comma), and either would be trained on as a
    feature without a word."""
    seen: dict[str, int] = {}
    for n in names:
        seen[n] = seen.get(n, 0) + 1
    repeated = [n for n, k in seen.items() if k > 1 and n]
    if repeated:
        also = f" (data.target={target} among them: a copy of the labels would be a feature)" if target in repeated else ""
        raise UserDataError(f"{source}: column name{'s' if len(repeated) > 1 else ''} {_names(repeated)} appear"
                            f"{'s' if len(repeated) == 1 else ''} more than once in the header{also}; "
                            "every column needs its own name")
    empty = [i + 1 for i, n in enumerate(names) if not n]
    if empty:
        first = " (a DataFrame's index, as to_csv() writes it by default? write it with index=False)" \
            if empty[0] == 1 else " (a trailing comma?)" if empty == [len(names)] else ""
        raise UserDataError(f"{source}: column{'s' if len(empty) > 1 else ''} {', '.join(map(str, empty))} of the "
                            f"header {'have' if len(empty) > 1 else 'has'} no name{first}; every column needs a "
                            "name, and every column but data.target is a feature")


# ---------------------------------------------------------------- callables


def _function(spec: Optional[str]):
    if not spec or not LOADER.fullmatch(str(spec)):
        raise UserDataError(f"data.loader={spec}: give the function as module:function, "
                            "e.g. data.loader=mypkg.datasets:load_mine")
    module_name, func_name = str(spec).split(":")
    here = launch_dir()  # as `python -m` would: the current folder first (where the command was typed)
    if here not in sys.path and not ("" in sys.path and here == os.getcwd()):
        sys.path.insert(0, here)
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise UserDataError(f"data.loader={spec}: cannot import {module_name} ({type(exc).__name__}: {_first(exc)}); "
                            "it must be importable from the current folder or PYTHONPATH") from None
    except SystemExit as exc:  # a script that runs (exits, parses the command line) when imported: regbench ended silently
        raise UserDataError(f"data.loader={spec}: importing {module_name} called sys.exit({exc.code!r}); a loader's "
                            "module must only define things when imported (put a script's own work under "
                            "if __name__ == '__main__':)") from None
    func = getattr(module, func_name, None)
    if not callable(func):
        kind = type(func).__name__
        what = "no function" if func is None else f"{'an' if kind[:1] in 'aeiou' else 'a'} {kind}, not a function, named"
        raise UserDataError(f"data.loader={spec}: {module_name} has {what} {func_name}")
    return func


def _call(spec: str) -> tuple:
    func = _function(spec)
    try:
        out = func()
    except Exception as exc:
        raise UserDataError(f"data.loader={spec} raised {type(exc).__name__}: {_first(exc)}") from None
    except SystemExit as exc:  # it would end regbench silently, with its code
        raise UserDataError(f"data.loader={spec} called sys.exit({exc.code!r}); a loader returns its arrays "
                            "(or raises an error that says what is wrong)") from None
    if isinstance(out, dict):
        if "x" not in out or "y" not in out:
            raise UserDataError(f"data.loader={spec} returned a dict without x and y (keys: {_names(list(out))})")
        other = [str(k) for k in out if k not in ("x", "y", "x_test", "y_test")]
        if other:  # a misspelt x_test would be dropped, and the test split cut from x instead
            raise UserDataError(f"data.loader={spec} returned a dict with key{'s' if len(other) > 1 else ''} "
                                f"{_names(other)}, which regbench does not read; its keys are x, y and, together, "
                                "x_test, y_test")
        return out["x"], out["y"], out.get("x_test"), out.get("y_test")
    if isinstance(out, (tuple, list)) and len(out) in (2, 4):
        return tuple(out) if len(out) == 4 else (out[0], out[1], None, None)
    raise UserDataError(f"data.loader={spec} returned {type(out).__name__}; it must return (x, y), "
                        "(x, y, x_test, y_test) or a dict with those keys")


# ---------------------------------------------------------------- checks


def _check(x, y, x_test, y_test, source: str, y_name: str = "y") -> Arrays:
    raw = {"x": x, "x_test": x_test}  # as given: a refusal names their types
    shapes = {k: tuple(getattr(v, "shape", ()) or ()) for k, v in raw.items()}
    x, y = _features(x, source, "x"), _labels(y, source, y_name)
    if len(x) != len(y):
        raise UserDataError(f"{source}: x has {len(x)} rows but {y_name} has {len(y)} labels; they must match")
    if len(y) < 2:
        raise UserDataError(f"{source}: {len(y)} example{'s' if len(y) != 1 else ''}; at least 2 are needed to split")
    if (x_test is None) != (y_test is None):
        raise UserDataError(f"{source}: x_test and y_test come together")
    if x_test is not None:
        x_test, y_test = _features(x_test, source, "x_test"), _labels(y_test, source, "y_test")
        if x_test.shape[1:] != x.shape[1:]:
            raise UserDataError(f"{source}: x_test has {x_test.shape[1]} features, x has {x.shape[1]}")
        squeezed = {k: tuple(d for d in v[1:] if d != 1) for k, v in shapes.items()}  # (1, 4, 4) is laid out as (4, 4)
        if len(shapes["x"]) > 2 and len(shapes["x_test"]) > 2 and squeezed["x"] != squeezed["x_test"]:
            # the same number of features in another layout (channels first against last): flattened, they would be scrambled
            raise UserDataError(f"{source}: x's examples are shaped {shapes['x'][1:]}, x_test's {shapes['x_test'][1:]}; "
                                "the test examples must be laid out as the training ones (transpose one of them)")
        if len(x_test) != len(y_test):
            raise UserDataError(f"{source}: x_test has {len(x_test)} rows but y_test has {len(y_test)} labels")
        if (x.dtype == np.uint8) != (x_test.dtype == np.uint8):  # regbench.data scales uint8 alone by 1/255
            pixels, other = ("x", "x_test") if x.dtype == np.uint8 else ("x_test", "x")
            raise UserDataError(
                f"{source}: {pixels} is uint8 (pixels, scaled to [0, 1]) but {other} is {_dtype(raw[other])} "
                "(used as is), so the test metrics would be on another scale; give both as uint8, or neither "
                "(e.g. both float, scaled alike)")
    classes = n_classes(y, y_test)
    present = np.unique(y)  # sorted; the work grows with N, never with the largest label
    if len(present) < classes:
        lacking = classes - len(present)
        first = np.setdiff1d(np.arange(min(classes, len(present) + 6)), present)  # the first few gaps
        in_test = np.intersect1d(np.setdiff1d(np.unique(y_test), present), np.arange(classes)) if y_test is not None else first[:0]
        which = f" (y_test has {_numbers(in_test, total=len(in_test))})" if len(in_test) else ""
        raise UserDataError(
            f"{source}: labels must be the classes 0..C-1, each present in the training labels; {y_name} has "
            f"{_numbers(present, total=len(present))} and lacks {_numbers(first, total=lacking)}{which}: "
            "renumber the classes 0..K-1 first")
    if classes < 2:
        raise UserDataError(f"{source}: every label is 0; at least 2 classes (0 and 1) are needed")
    return x, y, x_test, y_test


def _numbers(values: np.ndarray, most: int = 6, total: Optional[int] = None) -> str:
    """``0, 10, 20`` or ``1, 2, 3, ... (12 in all)``; ``total``: how many there are
    in all, where ``values`` holds only the first ones."""
    total = len(values) if total is None else total
    shown = [int(v) for v in values[:most]]
    return ", ".join(map(str, shown)) + (f", ... ({total} in all)" if total > most else "")


def _features(x, source: str, name: str) -> np.ndarray:
    try:
        x = np.asarray(x)
    except Exception as exc:
        raise UserDataError(f"{source}: {name} is not an array ({_first(exc)})") from None
    if x.ndim >= 1 and len(x) == 0:
        raise UserDataError(f"{source}: {name} is empty (shape {x.shape}); it needs at least one example")
    if x.ndim >= 2 and x.size == 0:
        raise UserDataError(f"{source}: {name} has no features (shape {x.shape}); each example needs at least one")
    if x.dtype == np.uint8 and x.ndim >= 1:  # images: regbench.data scales them to [0, 1]
        return x.reshape(len(x), -1)
    if x.ndim < 2 or not (np.issubdtype(x.dtype, np.number) and not np.issubdtype(x.dtype, np.complexfloating)):
        raise UserDataError(f"{source}: {name} must be numbers shaped (N, features...), not {x.dtype} {x.shape}")
    x = x.reshape(len(x), -1)
    if np.issubdtype(x.dtype, np.floating) and x.dtype.itemsize > 4 or np.issubdtype(x.dtype, np.integer) and x.dtype.itemsize > 8:
        big = np.isfinite(x) & (np.abs(x) > np.finfo(np.float32).max)  # finite, but inf once float32 (the model's type)
        if big.any():
            rows = np.flatnonzero(big.any(1))
            raise UserDataError(f"{source}: {name} holds {int(big.sum())} value{'s' if big.sum() > 1 else ''} too large "
                                f"for float32 (|v| > 3.4e38; e.g. {x[big][0]:.3g} in row {rows[0]}), which the model "
                                "computes in; rescale them first")
    with np.errstate(over="ignore"):
        x = x.astype(np.float32)
    bad = int((~np.isfinite(x)).sum())
    if bad:
        rows = np.flatnonzero(~np.isfinite(x).all(1))
        raise UserDataError(f"{source}: {name} holds {bad} NaN/inf value{'s' if bad > 1 else ''} "
                            f"(row{'s' if len(rows) > 1 else ''} {', '.join(map(str, rows[:5]))}"
                            f"{', ...' if len(rows) > 5 else ''}); "
                            "drop or impute them first")
    return x


def _dtype(a) -> str:
    """The element type of an array as given: ``int64``, ``float32`` (a list's, as numpy reads it)."""
    try:
        return str(np.asarray(a).dtype)
    except Exception:
        return type(a).__name__


def _labels(y, source: str, name: str) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1:
        raise UserDataError(f"{source}: {name} must be one integer class per example, shaped (N,), not {y.shape}")
    if y.dtype == object and len(y) and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in y):
        big = [int(v) for v in y if abs(int(v)) >= 2 ** 63]  # integers past int64 (a CSV column pandas could not type)
        if big:
            raise UserDataError(f"{source}: {name} holds {len(big)} label{'s' if len(big) > 1 else ''} too large "
                                f"to be classes (e.g. {_short(big[0])}); labels are integer classes 0..C-1")
        y = y.astype(np.int64)
    if np.issubdtype(y.dtype, np.floating) or np.issubdtype(y.dtype, np.unsignedinteger):
        big = np.abs(y) >= 2.0 ** 63  # int64 would wrap them (to negative labels)
        if big.any():
            raise UserDataError(f"{source}: {name} holds {int(big.sum())} label{'s' if big.sum() > 1 else ''} too large "
                                f"to be classes (e.g. {float(y[big][0]):.3g}); labels are integer classes 0..C-1")
    if np.issubdtype(y.dtype, np.floating):
        missing = ~np.isfinite(y)
        if missing.any():  # "labels that are not whole numbers (e.g. nan)": a missing label, say so
            rows = np.flatnonzero(missing)
            raise UserDataError(f"{source}: {name} holds {len(rows)} NaN/inf label{'s' if len(rows) > 1 else ''} "
                                f"({'rows' if len(rows) > 1 else 'row'} {_numbers(rows)}): missing labels? Labels are integer classes 0..C-1: drop those rows")
        whole = y == np.round(y)
        if not whole.all():
            raise UserDataError(f"{source}: {name} holds {int((~whole).sum())} labels that are not whole numbers "
                                f"(e.g. {float(y[~whole][0])!r}); labels are integer classes 0..C-1")
        y = y.astype(np.int64)
    elif not np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.bool_):
        sample = y[0].item() if len(y) and hasattr(y[0], "item") else (y[0] if len(y) else "")
        raise UserDataError(f"{source}: {name} holds {y.dtype} labels (e.g. {sample!r}); labels are integer "
                            "classes 0..C-1 (map names to numbers first)")
    y = y.astype(np.int64)
    if len(y) and y.min() < 0:
        raise UserDataError(f"{source}: {name} holds negative labels ({int(y.min())}); labels are classes 0..C-1")
    return y


def _short(n: int) -> str:
    """``1e+23``, or ``a 400-digit number`` past what a float holds."""
    try:
        return f"{float(n):.3g}"
    except OverflowError:
        return f"a {len(str(abs(n)))}-digit number"


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _first(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _names(names: list[str], most: int = 8) -> str:
    return ", ".join(names[:most]) + (f", ... ({len(names)} in all)" if len(names) > most else "")
