"""The chapter's four exercises as configurations: each exercise's arms, over seeds."""
from __future__ import annotations

import dataclasses
import numbers

from .. import config as chapter
from ..config import RunConfig, whole
from ..errors import UserError
from ..fashion_mnist import DEFAULT_RELEASE

EXERCISES = ("swap", "epochs", "width", "weight-decay")
DEFAULT_SEEDS = (0, 1, 2)
# Epochs per exercise in the default sweep (39 runs; docs/exercises.md says how long it takes).
DEFAULT_EPOCHS = {"swap": 10, "epochs": 40, "width": 10, "weight-decay": 40}
WIDTHS = (64, 256, 1024)  # 2048 costs 20 times the chapter's 256 (docs/performance.md, scaling)
WEIGHT_DECAYS = (1e-4, 3e-4, 1e-3)  # at 10 epochs 1e-2 already cost 7 points of test accuracy
# Quick mode: a data subset and a few epochs, to see everything work in seconds (the tests use it).
QUICK = {"seeds": (0, 1), "train_size": 3000, "test_size": 1000,
         "epochs": {"swap": 3, "epochs": 6, "width": 3, "weight-decay": 3}}


def arms(name: str, base: RunConfig) -> list:
    """The exercise's configurations, `[(label, RunConfig), ...]`, as variations of `base` (the chapter's)."""
    p1, p2 = chapter.drop_prob1, chapter.drop_prob2
    base = dataclasses.replace(base, drop_prob1=p1, drop_prob2=p2)
    none = dataclasses.replace(base, drop_prob1=0.0, drop_prob2=0.0)
    if name == "swap":
        return [(f"{p1:g}, {p2:g} (chapter)", base),
                (f"{p2:g}, {p1:g} (swapped)", dataclasses.replace(base, drop_prob1=p2, drop_prob2=p1)),
                ("0, 0 (no dropout)", none)]
    if name == "epochs":
        return [(f"dropout {p1:g}, {p2:g}", base), ("no dropout", none)]
    if name == "width":
        return [(f"{h} units, {what}", dataclasses.replace(c, num_hiddens1=h, num_hiddens2=h))
                for h in WIDTHS for what, c in ((f"dropout {p1:g}, {p2:g}", base), ("no dropout", none))]
    return ([("neither", none), (f"dropout {p1:g}, {p2:g}", base)]
            + [(f"wd {wd:g}", dataclasses.replace(none, wd=wd)) for wd in WEIGHT_DECAYS]
            + [(f"dropout + wd {WEIGHT_DECAYS[1]:g}", dataclasses.replace(base, wd=WEIGHT_DECAYS[1]))])


def seeds_of(seeds, quick: bool) -> tuple:
    """The seeds to run: a count (0 .. n-1), a list, or None for the default."""
    if seeds is None:
        return QUICK["seeds"] if quick else DEFAULT_SEEDS
    if isinstance(seeds, numbers.Integral) and not isinstance(seeds, bool):
        return tuple(range(whole(seeds, "seeds")))
    seeds = tuple(seeds)
    if (not seeds or not all(isinstance(s, numbers.Integral) and not isinstance(s, bool) and s >= 0 for s in seeds)
            or len(set(seeds)) < len(seeds)):  # a repeated seed would be counted as another sample
        raise UserError(f"seeds must be a count >= 1 or a list of distinct whole numbers >= 0, got {seeds!r}")
    return tuple(int(s) for s in seeds)


@dataclasses.dataclass(frozen=True)
class Plan:
    """What an exercise trains: its arms (label and configuration without seed), over `seeds`."""
    name: str
    arms: tuple
    seeds: tuple

    @property
    def base(self) -> RunConfig:
        return self.arms[0][1]

    def configs(self) -> list:
        return [dataclasses.replace(c, seed=s) for _, c in self.arms for s in self.seeds]


def plan(name: str, *, quick: bool = False, seeds=None, epochs: int | None = None, model: str = "gluon",
         data_release: str = DEFAULT_RELEASE, data_dir=None) -> Plan:
    """The exercise `name`: its arms on the full data (or quick mode's subset) and its seeds."""
    if name not in EXERCISES:
        raise UserError(f"unknown exercise {name!r}; choose one of {', '.join(EXERCISES)} (or 'all')")
    if epochs is None:
        epochs = (QUICK["epochs"] if quick else DEFAULT_EPOCHS)[name]
    sizes = {"train_size": QUICK["train_size"], "test_size": QUICK["test_size"]} if quick else {}
    base = RunConfig(model=model, num_epochs=epochs, data_release=data_release, data_dir=data_dir, **sizes)
    return Plan(name, tuple(arms(name, base)), seeds_of(seeds, quick))
