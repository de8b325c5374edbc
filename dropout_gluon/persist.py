"""Saving and loading what a run produces: models (either kind), histories, all written atomically."""
from __future__ import annotations

import csv
import datetime
import errno
import io
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Callable

import mxnet as mx
from mxnet import nd

from . import numerics
from .config import MODELS, RunConfig
from .errors import UserError
from .fashion_mnist import RELEASES, Source
from .gluon_net import get_net
from .scratch import ScratchNet, num_inputs, num_outputs
from .trainer import Epoch, History

SCRATCH_NAMES = ["W1", "b1", "W2", "b2", "W3", "b3"]
# The files of a trained model's folder ('dropout-gluon train'; predict adds PREDICTIONS).
CONFIG, HISTORY_JSON, HISTORY_CSV, PARAMS, CURVES, PREDICTIONS = (
    "config.json", "history.json", "history.csv", "model.params", "curves.png", "predictions.png")
RUN_FILES = (CONFIG, HISTORY_JSON, HISTORY_CSV, PARAMS, CURVES, PREDICTIONS)
RUN_TEMP = re.compile(r"\.[\w.]+\.tmp[\w.]*")  # what atomic_write leaves behind if the process is killed


# Read once, as the module loads: reading it means setting it, which would race with threads that create
# files or start processes (the sweep's pool) if it were done on every write.
UMASK = os.umask(0o022)
os.umask(UMASK)


class ModelFileError(UserError):
    """A parameters file that is missing, unreadable, truncated, or not one of this project's models."""


def atomic_write(path: os.PathLike | str, write: Callable[[str], None]) -> Path:
    """Call `write(tmp_path)`, then rename the temp file to `path`: readers see the old file or the new, never half."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~UMASK)  # mkstemp makes files private; give the usual permissions
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def write_text(path: os.PathLike | str, text: str) -> Path:
    """Write `text` to `path` atomically."""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def check_writable(folder: os.PathLike | str, option: str) -> Path:
    """Check, before any work, that files can be written in `folder` (by writing one); a UserError saying why
    not. Folders made for the check are removed again: a command that then fails leaves nothing behind."""
    folder = Path(folder)
    made = next((p for p in (*reversed(folder.parents), folder) if not p.exists()), None)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        write_text(folder / ".write-test", "").unlink()
    except OSError as e:
        raise UserError(f"cannot write to {option} {folder}: {e.strerror}; choose another folder") from None
    finally:
        if made is not None:
            shutil.rmtree(made, ignore_errors=True)
    return folder


class RunFolder:
    """A run's output folder (`--out`; default a new one under runs/), checked before any work is done.

    A run into a folder that holds a previous run is written into a fresh folder beside it, which takes
    the folder's place when the run ends (done or stopped): the folder holds one run's files, never two
    runs' side by side. A folder holding anything else is refused, so nothing of the user's is deleted.
    """

    def __init__(self, out: str | None):
        try:
            if out is None:  # a name of its own, claimed by mkdir (two runs never share one): written in place
                self.path = self.work = _new_stamped(Path("runs"))
                return
            self.path = Path(out)
            if self.path.exists():
                foreign = _not_a_runs(self.path)
                if foreign:
                    raise UserError(f"--out {out} holds {foreign}, which is not a file of a run; choose a new or "
                                    f"empty folder (or one that 'train' wrote, which a rerun replaces whole)")
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.work = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.", suffix=".partial", dir=self.path.parent))
        except OSError as e:
            raise UserError(f"cannot write to --out {out or 'runs/'}: {e.strerror}; choose another folder") from None

    def finish(self) -> Path:
        """Put the run in its place: `path` then holds it whole. A run that wrote nothing changes nothing."""
        if not any(self.work.iterdir()):
            self.work.rmdir()
        elif self.work != self.path:
            os.chmod(self.work, 0o777 & ~UMASK)  # mkdtemp makes folders private
            old = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.", suffix=".old", dir=self.path.parent))
            if self.path.exists():
                os.replace(self.path, old / "run")
            os.replace(self.work, self.path)
            shutil.rmtree(old)
        return self.path


def _new_stamped(parent: Path) -> Path:
    parent.mkdir(exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    for k in range(1, 1000):
        try:
            path = parent / (stamp if k == 1 else f"{stamp}-{k}")
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "a thousand runs started this second", str(parent))


def _not_a_runs(folder: Path) -> str | None:
    # The first thing in `folder` that 'train' would not have written there, if any.
    if not folder.is_dir():
        return "a file of that name"
    for entry in folder.iterdir():
        inside = list(entry.iterdir()) if entry.name in MODELS and entry.is_dir() else [entry]
        for path in inside:
            if path.name not in RUN_FILES and not RUN_TEMP.fullmatch(path.name):
                return str(path)
    return None


def save_history(history: History, folder: Path) -> None:
    """`history.json` and `history.csv` in `folder`, one row an epoch, each naming its data release and folder
    and how its numbers were computed (numerics.record())."""
    # The label on every row: a row copied elsewhere still says which data its numbers came from, and how.
    label = {"data_release": history.source.release, "data_dir": history.source.folder} if history.source else {}
    label.update(numerics.record())
    rows = [{**e._asdict(), **label} for e in history]
    write_text(folder / HISTORY_JSON, json.dumps(rows, indent=1) + "\n")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=[*Epoch._fields, *label])
    writer.writeheader()
    writer.writerows(rows)
    write_text(folder / HISTORY_CSV, buffer.getvalue())


def save_config(config: RunConfig, source: Source, folder: Path) -> Path:
    """`config.json`: the run's configuration (rerun it with 'train --config'), the folder it read and how its
    numbers were computed."""
    return write_text(folder / CONFIG, json.dumps({**config.to_dict(), "data_folder": source.folder,
                                                   "computed_with": numerics.record()}, indent=1) + "\n")


def load_config(path: os.PathLike | str) -> RunConfig:
    """The configuration in a config.json that 'train' wrote; ValueError saying what is wrong otherwise."""
    try:
        values = json.loads(Path(path).read_text())
    except OSError as e:
        raise UserError(f"cannot read the configuration {path}: {e.strerror}") from None
    except ValueError:
        raise UserError(f"{path} is not a JSON file; pass a config.json that 'dropout-gluon train' wrote") from None
    if not isinstance(values, dict):
        raise UserError(f"{path} holds no configuration; pass a config.json that 'dropout-gluon train' wrote")
    return RunConfig.from_dict(values)


def save_model(net, path: os.PathLike | str) -> Path:
    """Save a model's parameters: Gluon's `save_parameters`, or the scratch model's six arrays by name."""
    if isinstance(net, ScratchNet):
        arrays = dict(zip(SCRATCH_NAMES, net.params))
        return atomic_write(path, lambda tmp: nd.save(tmp, arrays))
    return atomic_write(path, net.save_parameters)


def load_model(path: os.PathLike | str, ctx=None):
    """Load a model saved by `save_model`, telling the kind from the names inside; returns `(net, kind)`."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"no parameters file at {path}; pass the model.params that 'dropout-gluon train' wrote")
    try:
        arrays = nd.load(str(path))
    except mx.base.MXNetError:
        raise ModelFileError(f"{path} is not a readable MXNet parameters file (truncated or another format); "
                             f"train again with 'dropout-gluon train'") from None
    if not isinstance(arrays, dict):
        raise ModelFileError(f"{path} holds unnamed arrays, not a model saved by dropout-gluon")
    if sorted(arrays) == sorted(SCRATCH_NAMES):
        kind, shapes = "scratch", [arrays[name].shape for name in SCRATCH_NAMES]
    elif len(arrays) == 6 and all(k.endswith((".weight", ".bias")) for k in arrays):
        kind = "gluon"
        weights = [arrays[k] for k in sorted(arrays) if k.endswith(".weight")]
        biases = [arrays[k] for k in sorted(arrays) if k.endswith(".bias")]
        # Gluon stores a Dense weight as (out, in); line it up with the scratch layout (in, out).
        shapes = [s for w, b in zip(weights, biases) for s in (w.shape[::-1], b.shape)]
    else:
        raise ModelFileError(f"{path} holds {', '.join(sorted(arrays)) or 'nothing'}: neither the scratch "
                             f"model's W1 ... b3 nor the Gluon model's three Dense layers")
    n1 = shapes[0][1] if len(shapes[0]) == 2 else -1
    n2 = shapes[2][1] if len(shapes[2]) == 2 else -1
    expected = [(num_inputs, n1), (n1,), (n1, n2), (n2,), (n2, num_outputs), (num_outputs,)]
    if n1 < 1 or n2 < 1 or shapes != expected:
        raise ModelFileError(f"{path} has shapes {shapes}, which do not fit the chapter's MLP "
                             f"(784 inputs, two hidden layers, 10 outputs)")
    if kind == "scratch":
        params = [arrays[name].as_in_context(ctx or mx.cpu()) for name in SCRATCH_NAMES]
        for param in params:
            param.attach_grad()
        return ScratchNet(params=params), kind
    net = get_net(num_hiddens1=n1, num_hiddens2=n2)
    try:
        net.load_parameters(str(path), ctx=ctx)
    except (AssertionError, mx.base.MXNetError, ValueError) as e:
        raise ModelFileError(f"{path} does not load into the Gluon model: {str(e).splitlines()[0]}") from None
    return net, kind


def trained_with(params: os.PathLike | str) -> tuple:
    """`(data release, computed_with)` in the config.json that 'train' wrote beside `params` (None where unknown)."""
    try:
        saved = json.loads((Path(params).parent / CONFIG).read_text())
        release, numerics = saved.get("data_release"), saved.get("computed_with")
    except (OSError, ValueError, AttributeError):
        return None, None
    return release if release in RELEASES else None, numerics if isinstance(numerics, dict) else None
