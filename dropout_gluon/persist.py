"""A run's folder and files: either model's parameters, histories, configurations, each written atomically."""
from __future__ import annotations

import contextlib
import csv
import datetime
import fcntl
import io
import itertools
import json
import os
import re
import threading
from pathlib import Path
from typing import Callable

import mxnet as mx
from mxnet import nd

from .config import MODELS, RunConfig
from .errors import UserError
from .fashion_mnist import RELEASES, Source
from .gluon_net import get_net
from .scratch import ScratchNet, num_inputs, num_outputs
from .trainer import Epoch, History

SCRATCH_NAMES = ["W1", "b1", "W2", "b2", "W3", "b3"]
# A trained model's folder ('dropout-gluon train'; predict adds PREDICTIONS); a run's: one per model, and CURVES.
RUN_FILES = CONFIG, HISTORY_JSON, HISTORY_CSV, PARAMS, CURVES, PREDICTIONS = (
    "config.json", "history.json", "history.csv", "model.params", "curves.png", "predictions.png")
RUN_TEMP = re.compile(r"\.[\w.]+\.tmp[\w.]*")  # what atomic_write leaves behind if the process is killed


def atomic_write(path: os.PathLike | str, write: Callable[[str], None]) -> Path:
    """Call `write(tmp_path)`, then rename the temp file to `path`: readers see the old file or the new, never half."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp{path.suffix}")  # one per writer
    try:
        write(str(tmp))
        os.replace(tmp, path)
    except OSError as e:  # (a full disk, say) named by the file asked for, not its temp file
        raise OSError(e.errno, e.strerror, str(path)) from None
    except mx.base.MXNetError as e:  # how MXNet's writes fail, a full disk's too: 'FileStream.Write incomplete'
        raise OSError(None, f"MXNet could not write it ({str(e).splitlines()[-1].split(': ')[-1]})",
                      str(path)) from None
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_text(path: os.PathLike | str, text: str) -> Path:
    """Write `text` to `path` atomically, as UTF-8 (whatever the locale)."""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def check_writable(folder: os.PathLike | str, option: str) -> Path:
    """A UserError, before any work, unless `folder`, or its nearest existing ancestor, is a writable folder."""
    folder = Path(folder)
    existing = next(p for p in (folder, *folder.parents) if os.path.lexists(p))
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        why = "is not writable" if existing.is_dir() else "is not a folder"
        raise UserError(f"cannot write to {option} {folder}: {existing} {why}; choose another folder")
    return folder


def check_out(out: str | None) -> Path | None:
    """`--out` (None: a new folder under runs/) checked before any work: new, empty, or an earlier run's."""
    folder = check_writable("runs" if out is None else out, "--out")
    if out is not None and folder.is_dir():
        with _held(folder):  # refused now, not after the data is read, if another training holds it
            _earlier_run(folder)
    return None if out is None else folder


@contextlib.contextmanager
def run_folder(out: Path | None):
    """The run's folder, made as training starts and locked while it lasts: `out`, emptied of an earlier
    run, or a new one under runs/. A UserError, touching nothing, if another training holds `out`."""
    folder = _new_stamped(Path("runs")) if out is None else out
    folder.mkdir(parents=True, exist_ok=True)  # (a symlink to a folder stays one: its target is written)
    with _held(folder):
        for path in _earlier_run(folder):
            path.rmdir() if path.is_dir() else path.unlink()
        yield folder


@contextlib.contextmanager
def _held(folder: Path):
    # flock on the folder itself: the kernel releases it when the process ends, however it ends (no stale lock).
    fd = os.open(folder, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(f"--out {folder} is in use: another training is writing there now; let it finish, "
                            f"or choose another folder") from None
        yield
    finally:
        os.close(fd)


def _new_stamped(parent: Path) -> Path:
    parent.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    for path in (parent / (stamp if k == 1 else f"{stamp}-{k}") for k in itertools.count(1)):
        with contextlib.suppress(FileExistsError):
            path.mkdir()  # claims the name: two runs started in the same second never share a folder
            return path


def _earlier_run(out: Path) -> list:
    # The files (then the model folders) that 'train' wrote in `out`; a UserError at the first thing it did not.
    found = []
    if (out / CONFIG).is_file():  # e.g. `--out .` inside runs/X/scratch
        raise UserError(f"--out {out} is one model's folder of a run; give the run's folder (e.g. --out "
                        f"{out.resolve().parent}) to replace that run, or a new or empty folder")
    for entry in out.iterdir():
        model = entry.name in MODELS and entry.is_dir() and not entry.is_symlink()
        for path in entry.iterdir() if model else [entry]:
            if path.is_dir() or not (path.name in (RUN_FILES if model else (CURVES,))
                                     or RUN_TEMP.fullmatch(path.name)):
                raise UserError(f"--out {out} holds {path}, which is not a file of a run; choose a new or empty "
                                f"folder (or one that 'train' wrote, which a rerun replaces whole)")
            found.append(path)
        found += [entry] if model else []
    return found


def save_history(history: History, folder: Path, record: dict) -> None:
    """`history.json` and `history.csv` in `folder`, one row an epoch, each labelled with the data and numerics
    record: a row copied elsewhere still says which data its numbers came from, and how."""
    label = {**history.source._asdict(), **record}
    rows = [{**e._asdict(), **label} for e in history]
    write_text(folder / HISTORY_JSON, json.dumps(rows, indent=1) + "\n")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=[*Epoch._fields, *label])
    writer.writeheader()
    writer.writerows(rows)
    write_text(folder / HISTORY_CSV, buffer.getvalue())


def save_config(config: RunConfig, source: Source, folder: Path, record: dict) -> Path:
    """`config.json`: the run's configuration ('train --config' reruns it), the data it read, the numerics record."""
    return write_text(folder / CONFIG, json.dumps({**config.to_dict(), "data": source._asdict(), "numerics": record},
                                                  indent=1) + "\n")


def load_config(path: os.PathLike | str) -> tuple:
    """`(configuration, numerics mode it was computed in or None)` from a config.json that 'train' wrote."""
    values = read_json(path, "configuration")
    if not isinstance(values, dict):
        raise UserError(f"{path} holds no configuration; pass a config.json that 'dropout-gluon train' wrote")
    values.pop("data", None)  # what the run read, and how it computed: not settings of the run
    record = values.pop("numerics", None)
    mode = record.get("mode") if isinstance(record, dict) else None  # a GPU run's record has none
    return RunConfig.from_dict(values), mode


def read_json(path: os.PathLike | str, what: str):
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise UserError(f"cannot read the {what} {path}: {e.strerror}") from None
    except ValueError:
        raise UserError(f"{path} is not a JSON file; pass a config.json that 'dropout-gluon train' wrote") from None


def save_model(net, path: os.PathLike | str) -> Path:
    """Save a model's parameters: Gluon's `save_parameters`, or the scratch model's six arrays by name."""
    if isinstance(net, ScratchNet):
        arrays = dict(zip(SCRATCH_NAMES, net.params))
        return atomic_write(path, lambda tmp: nd.save(tmp, arrays))
    return atomic_write(path, net.save_parameters)


def load_model(path: os.PathLike | str, ctx=None):
    """Load a model saved by `save_model`, telling which model from the names inside; returns `(net, model)`."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no parameters file at {path}; pass the model.params that 'dropout-gluon train' wrote")
    try:
        arrays = nd.load(str(path))
    except mx.base.MXNetError:
        raise UserError(f"{path} is not a readable MXNet parameters file (truncated or another format); "
                        f"train again with 'dropout-gluon train'") from None
    names = sorted(arrays) if isinstance(arrays, dict) else []
    if names == sorted(SCRATCH_NAMES):
        model, shapes = "scratch", [arrays[name].shape for name in SCRATCH_NAMES]
    elif len(names) == 6 and all(k.endswith((".bias", ".weight")) for k in names):
        # Sorted, each Dense layer's bias then weight; Gluon stores a weight as (out, in), the scratch one (in, out).
        model, shapes = "gluon", [arrays[k].shape[::-1] for w, b in zip(names[1::2], names[::2]) for k in (w, b)]
    else:
        raise UserError(f"{path} holds {', '.join(names) or 'unnamed arrays'}: neither the scratch model's "
                        f"W1 ... b3 nor the Gluon model's three Dense layers")
    n1, n2 = (shapes[0][-1], shapes[2][-1]) if len(shapes[0]) == len(shapes[2]) == 2 else (0, 0)
    if n1 < 1 or n2 < 1 or shapes != [(num_inputs, n1), (n1,), (n1, n2), (n2,), (n2, num_outputs), (num_outputs,)]:
        raise UserError(f"{path} has shapes {shapes}, which do not fit the chapter's MLP "
                        f"(784 inputs, two hidden layers, 10 outputs)")
    if model == "scratch":
        params = [arrays[name].as_in_context(ctx or mx.cpu()) for name in SCRATCH_NAMES]
        for param in params:
            param.attach_grad()
        return ScratchNet(params=params), model
    net = get_net(num_hiddens1=n1, num_hiddens2=n2)
    try:
        net.load_parameters(str(path), ctx=ctx)
    except (AssertionError, mx.base.MXNetError, ValueError) as e:
        raise UserError(f"{path} does not load into the Gluon model: {str(e).splitlines()[0]}") from None
    return net, model


def trained_with(params: os.PathLike | str) -> tuple:
    """`(data release, numerics record)` in the config.json beside `params` (None where unknown)."""
    try:
        saved = read_json(Path(params).parent / CONFIG, "configuration")
        release, record = saved.get("data_release"), saved.get("numerics")
    except (UserError, AttributeError):
        return None, None
    return release if release in RELEASES else None, record if isinstance(record, dict) else None
