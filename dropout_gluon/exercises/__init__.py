"""The chapter's four exercises, answered by experiments: every configuration over several seeds.

`plan` says what an exercise trains, `sweep` trains it (resumably), `report` makes its table and plot (`dropout-gluon
exercise NAME|all`). `COMMITTED` holds the default sweep's `<name>.md` and `<name>.png`, in every install."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from .. import numerics
from ..errors import UserError
from ..fashion_mnist import DEFAULT_RELEASE, Dataset
from ..persist import check_writable
from .plan import DEFAULT_EPOCHS, DEFAULT_SEEDS, EXERCISES, QUICK, Plan, plan
from .pool import train_run
from .report import ExerciseResult, report, summarize
from .sweep import RunCache, SweepFailed, key, sweep

__all__ = ["COMMITTED", "DEFAULT_EPOCHS", "DEFAULT_SEEDS", "EXERCISES", "QUICK", "ExerciseResult", "Plan", "RunCache",
           "SweepFailed", "key", "plan", "report", "run_all", "run_exercise", "summarize", "sweep", "train_run"]


def run_all(names=EXERCISES, *, quick: bool = False, seeds=None, epochs: int | None = None, model: str = "gluon",
            data_release: str = DEFAULT_RELEASE, data_dir=None, out_dir: os.PathLike | str = "runs/exercises",
            cache_dir: os.PathLike | str = "runs/exercises", dataset: Dataset | None = None,
            jobs: int | None = 1, scheduler: str | None = None, progress: bool = True,
            after_run: Callable[[dict], None] | None = None) -> dict:
    """Train (or reuse) the runs of the exercises `names` as one sweep (`sweep`: runs two exercises share are
    trained once), then write each one's table and plot; return `{name: ExerciseResult}`."""
    plans = [plan(name, quick=quick, seeds=seeds, epochs=epochs, model=model, data_release=data_release,
                  data_dir=data_dir) for name in names]
    check_out_dir(out_dir, plans)
    check_writable(out_dir, "--out"), check_writable(cache_dir, "--cache")  # before a sweep of many minutes
    records = sweep([c for p in plans for c in p.configs()], cache_dir=cache_dir, dataset=dataset, jobs=jobs,
                    scheduler=scheduler, progress=progress, after_run=after_run)
    return {p.name: report(p, records, out_dir) for p in plans}


# The default sweep's tables and plots (`make exercises`), shipped with the package so that any install has them.
COMMITTED = Path(__file__).resolve().parent / "results"


def check_out_dir(out_dir, plans: list) -> None:
    """A UserError, before any training, if any sweep but the default one in portable numerics (any data folder
    will do) would write into COMMITTED."""
    changed = any([c.identity() for c in p.configs()] != [c.identity() for c in plan(p.name).configs()] for p in plans)
    if Path(out_dir).resolve() == COMMITTED and (numerics.MODE != "portable" or changed):
        raise UserError(f"{out_dir} holds the committed results of the default sweep (make exercises); a quick or "
                        f"changed sweep, or one in native numerics, writes elsewhere: choose another --out")


def run_exercise(name: str, **options) -> ExerciseResult:
    """One exercise: `run_all([name], **options)[name]`."""
    return run_all([name], **options)[name]
