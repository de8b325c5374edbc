"""The benchmark's report: tables from a run's results, or from a file saved with --json."""
from __future__ import annotations

import io
import statistics

from . import cells
from .reference import N_TEST, N_TRAIN, epoch_flops, layers

GOALS = {"vs_torch": 1.0, "vs_book": 3.0, "vs_floor": 2.0, "rss_mb": 700, "test_acc": 0.84}
# Issue 15's goal for the Python API's modes on an AVX2/FMA machine: the epoch against PyTorch's, per model.
MODE_GOALS = {"scratch": 1.5, "gluon": 1.2}
MODELS = ("scratch", "gluon")
PHASES = [  # operator name -> phase of the training step; the first matching rule wins
    ("matrix products", ("dot", "_backward_dot", "FullyConnected", "_backward_FullyConnected")),
    ("dropout", ("_random_uniform", "_lesser_scalar", "broadcast_mul", "_backward_broadcast_mul",
                 "_div_scalar", "_backward_div_scalar", "Dropout", "_backward_Dropout")),
    ("bias add (scratch), ReLU", ("broadcast_add", "_backward_broadcast_add", "relu", "_backward_relu",
                                  "Activation", "_backward_Activation")),
    ("parameter update", ("sgd_update", "multi_sgd_update", "broadcast_sub", "_mul_scalar")),
    ("loss", ("log_softmax", "_backward_log_softmax", "pick", "_backward_pick", "mean", "_backward_mean",
              "sum", "_backward_sum", "_backward_mul_scalar", "negative", "_backward_negative")),
    ("batch gather", ("take", "_image_to_tensor", "slice")),
]


def phase_of(op: str) -> str:
    for phase, names in PHASES:
        if op in names:
            return phase
    return "bookkeeping (argmax, casts, copies, ...)"


def medians(seconds: dict) -> dict:
    """Median seconds per epoch of each main cell, keyed (loader, model); ("torch", None) is the reference,
    PyTorch at its faster thread count in this run (the stricter comparison), "torch_threads" that count."""
    med: dict = {}
    for key, values in seconds.items():
        loader, model = key.split("/")
        med[loader, int(model) if loader == "torch" else model] = (
            statistics.median(values) if isinstance(values, list) and values else None)  # else an error
    torch_meds = [(med["torch", t], t) for t in (1, 2) if med.get(("torch", t)) is not None]
    med["torch", None], med["torch_threads"] = min(torch_meds) if torch_meds else (None, None)
    return med


def chapter_of(results: dict) -> dict:
    """The chapter's constants the run measured; for runs saved before they were recorded, the package's."""
    return results["info"].get("chapter") or cells.chapter()


def floor_of(gemm: dict) -> float | None:
    return gemm["seconds"][0] if "error" not in gemm else None


def goal_ratios(med: dict, floor: float | None) -> dict:
    """The three speed goals' ratios, keyed (goal, model): "torch", "book" and "floor"; None if a cell failed."""
    ratios = {}
    for m in MODELS:
        d = med["default", m]
        ratios["torch", m] = ratio_or_none(d, med["torch", None])
        ratios["book", m] = ratio_or_none(med["book", m], d)
        ratios["floor", m] = ratio_or_none(d, floor)
    return ratios


def met(goal: str, ratio: float) -> bool:
    return ratio >= GOALS["vs_book"] if goal == "book" else ratio <= GOALS[f"vs_{goal}"]


def ratio_or_none(a, b):
    return None if a is None or not b else a / b


def mark(ok: bool) -> str:
    return "met" if ok else "NOT met"


def fmt(x, spec: str = ".2f") -> str:
    return "-" if x is None else format(x, spec)


def report(results: dict) -> None:
    """Print the tables from the measurements (a run's, or one saved with --json)."""
    print(tables(results), end="")


def tables(results: dict) -> str:
    """The report's text: the machine, seconds per epoch, goals, memory, the profile, the sweep and scaling."""
    buffer = io.StringIO()

    def say(*args) -> None:
        print(*args, file=buffer)

    epochs, rounds, chapter = results["epochs"], results["rounds"], chapter_of(results)
    widths, batch_size = layers(chapter), chapter["batch_size"]
    med = medians(results["seconds"])
    floor = floor_of(results["gemm"])
    torch_info = results.get("torch")
    versions = f"mxnet {results['info']['mxnet']}, numpy {results['info']['numpy']}"
    if torch_info:
        versions += f", torch {torch_info['version']}"
    gpus = results["info"]["gpus"]
    say(f"machine: {results['machine']}, {'no GPU' if not gpus else f'{gpus} GPUs (unused)'}; {versions}")
    if "data" in results["info"]:  # (runs saved before the data was recorded lack it)
        say(f"data: {results['info']['data']}")
    la, lb = results["load"]
    say(f"load average (1 min) at start {la[0]:.1f}, at end {lb[0]:.1f}; "
        f"benchmark took {results['total_s'] / 60:.1f} min")
    engine = results["info"].get("engine") or {}
    in_effect = ", ".join(f"{k}={v}" for k, v in engine.items()) or "MXNet's defaults"
    say(f"MXNet engine settings in effect: {in_effect}")
    if "numerics" in results["info"]:  # (runs saved before the two modes lack it)
        say(f"processor features: {', '.join(results['info']['flags']) or 'none of avx, avx2, fma, avx512f'}")
        say(f"numerics, default: {results['info']['numerics']}")
        if results.get("native"):
            say(f"numerics, native:  {results['native']}")
    say()
    say(f"Seconds per epoch ({N_TRAIN} training + {N_TEST} test images, batch {batch_size}; median of {epochs} "
        f"epochs after a warm-up, x {rounds} rounds)")
    say(f"{'':28s}{'scratch':>10s}{'Gluon':>10s}")
    modes = "numerics" in results["info"]
    for loader, label in (("book", "book (DataLoader, loop)"), ("loader", "book DataLoader, train_ch3"),
                          ("default", "default: portable" if modes else "default (memory)"), ("native", "native")):
        if (loader, MODELS[0]) not in med:
            continue
        row = [med[loader, m] for m in MODELS]
        say(f"{label:28s}{fmt(row[0]):>10s}{fmt(row[1]):>10s}")
    torch_s = med["torch", None]
    if torch_s is None:
        say(f"{'PyTorch reference':28s}  {results['seconds']['torch/1']}")
    else:
        t1, t2 = med["torch", 1], med["torch", 2]
        say(f"{'PyTorch reference':28s}{fmt(torch_s):>10s}{fmt(torch_s):>10s}   (the same model; "
            f"{results['torch_threads']} thread(s), the faster here: 1 thread {fmt(t1)}, 2 threads {fmt(t2)})")
    flops = epoch_flops(widths, batch_size)
    if floor is not None:
        say(f"{'GEMM floor':28s}{fmt(floor):>10s}{fmt(floor):>10s}   ({flops / 1e9:.1f} GFLOP of matrix "
            f"products at {flops / floor / 1e9:.0f} GFLOP/s, numpy on the model's shapes; "
            f"{results['gemm']['square_gflops']:.0f} GFLOP/s on 2048^2)")
    floor1 = floor_of(results["gemm1"])
    if floor1 is not None:
        say(f"{'GEMM floor, 1 thread':28s}{fmt(floor1):>10s}{fmt(floor1):>10s}   (the same at "
            f"{flops / floor1 / 1e9:.0f} GFLOP/s, numpy's BLAS on one thread)")
    say()
    say(f"{'goal':40s}{'scratch':>10s}{'Gluon':>10s}")
    ratios = goal_ratios(med, floor)
    for goal, label in (("torch", f"default / PyTorch       <= {GOALS['vs_torch']:.1f}"),
                        ("book", f"book / default          >= {GOALS['vs_book']:.0f}"),
                        ("floor", f"default / GEMM floor    <= {GOALS['vs_floor']:.0f}")):
        row = [ratios[goal, m] for m in MODELS]
        row = ["-" if r is None else f"{r:.2f} {'ok' if met(goal, r) else 'NO'}" for r in row]
        say(f"{label:40s}{row[0]:>10s}{row[1]:>10s}")
    for loader in ("default", "native") if modes else ():
        row = [ratio_or_none(med[loader, m], med["torch", None]) for m in MODELS]
        row = ["-" if r is None else f"{r:.2f} {'ok' if r <= MODE_GOALS[m] else 'NO'}" for r, m in zip(row, MODELS)]
        label = f"{'portable' if loader == 'default' else loader} / PyTorch"
        say(f"{label:24s}<= {MODE_GOALS['scratch']}, {MODE_GOALS['gluon']}   {row[0]:>10s}{row[1]:>10s}")
    threads = results["info"].get("threads_per_operator")
    if floor1 is not None and torch_s is not None and threads == 1:
        # Each product needs the one before it (the test pass's, ~7% of the FLOPs, excepted: its batches
        # are independent), so on one thread each they add up: the epoch takes about the 1-thread floor or more.
        test_share = epoch_flops(widths, batch_size, test_only=True) / flops
        vs_floor1, vs_t1 = ({m: fmt(ratio_or_none(med["default", m], ref)) for m in MODELS}
                            for ref in (floor1, med["torch", 1]))
        say(f"bound: MXNet runs each operator here on 1 OpenMP thread and the products depend on one another "
            f"(but the test pass's, {test_share:.0%} of the FLOPs),\n  so a default epoch takes at least about "
            f"the 1-thread GEMM floor, {floor1:.2f} s; PyTorch's {torch_s:.2f} s is {torch_s / floor1:.2f}x "
            f"that floor.\n  default / 1-thread floor: scratch {vs_floor1['scratch']}, Gluon {vs_floor1['gluon']}; "
            f"default / PyTorch on 1 thread: scratch {vs_t1['scratch']}, Gluon {vs_t1['gluon']}")
    rss = results["rss"]
    if "error" in rss:
        say(f"peak RSS of the main job: {rss['error']}")
    else:
        acc_ok = all(a >= GOALS["test_acc"] for a in rss["test_acc"])
        say(f"peak RSS of `python -m dropout_gluon train` (both models, {chapter['num_epochs']} epochs, "
            f"{rss['seconds']:.0f} s): {rss['rss_mb']:.0f} MB, goal <= {GOALS['rss_mb']}: "
            f"{mark(rss['rss_mb'] <= GOALS['rss_mb'])}; final test acc {', '.join(f'{a:.3f}' for a in rss['test_acc'])}"
            f", book's band >= {GOALS['test_acc']}: {mark(acc_ok)}")

    say()
    say("Where the default path's time goes (MXNet profiler, one epoch after a warm-up; ms per epoch; "
        "operators on MXNet's workers can overlap, so they can sum to more than the wall clock)")
    profiles = results["profiles"]
    if all("error" not in p for p in profiles.values()):
        phases: dict = {}
        for m, p in profiles.items():
            for op, ms in p["ops_ms"].items():
                phases.setdefault(phase_of(op), {}).setdefault(m, 0.0)
                phases[phase_of(op)][m] += ms
        say(f"{'phase':42s}{'scratch':>10s}{'Gluon':>10s}")
        for phase, by_model in sorted(phases.items(), key=lambda kv: -sum(kv[1].values())):
            say(f"{phase:42s}{by_model.get('scratch', 0):>10.0f}{by_model.get('gluon', 0):>10.0f}")
        total = {m: sum(p["ops_ms"].values()) for m, p in profiles.items()}
        say(f"{'all operators':42s}{total['scratch']:>10.0f}{total['gluon']:>10.0f}")
        say(f"{'epoch, wall clock (unprofiled)':42s}{profiles['scratch']['epoch_s'] * 1e3:>10.0f}"
            f"{profiles['gluon']['epoch_s'] * 1e3:>10.0f}")
        for m, p in profiles.items():
            top = sorted(p["ops_ms"].items(), key=lambda kv: -kv[1])[:6]
            say(f"  top operators, {m}: " + ", ".join(f"{op} {ms:.0f}" for op, ms in top))
    else:
        say("  " + "; ".join(p.get("error", "") for p in profiles.values()))

    if results["sweep"]:
        say()
        say("Other settings (each replaces the package's engine settings): epoch time with the setting / "
            "the default's, same run; < 1 is faster; 'changes' = another test accuracy from the same seed")
        say(f"{'setting':52s}{'scratch':>16s}{'Gluon':>16s}")
        for setting, by_model in results["sweep"].items():
            row = [f"{fmt(by_model[m])}{'' if by_model[m + '_same'] else ' changes'}" for m in MODELS]
            say(f"{setting:52s}{row[0]:>16s}{row[1]:>16s}")

    scaling = results["scaling"]
    if scaling:
        say()
        say("Scaling: seconds per epoch against hidden width (both hidden layers) and batch size; "
            "each cell timed on a fraction of the epoch and scaled up; "
            f"PyTorch at {results['torch_threads'] or 1} thread(s)")
        say(f"{'width':>6s}{'batch':>7s}{'GFLOP':>8s}{'floor':>8s}{'scratch':>9s}{'Gluon':>8s}{'PyTorch':>9s}"
            f"{'Gluon/floor':>13s}{'measured on':>13s}")
        torch_cells = scaling["torch"].get("cells")
        for i, (h, b, fraction) in enumerate(scaling["cells"]):
            fl = scaling["floor"]["seconds"][i] if "error" not in scaling["floor"] else None
            s = scaling["scratch"]["seconds"][i] if "error" not in scaling["scratch"] else None
            g = scaling["gluon"]["seconds"][i] if "error" not in scaling["gluon"] else None
            t = statistics.median(torch_cells[i]["seconds"]) / fraction if torch_cells else None
            ratio = g / fl if g and fl else None
            say(f"{h:>6d}{b:>7d}{epoch_flops(layers(chapter, h), b) / 1e9:>8.0f}{fmt(fl):>8s}{fmt(s):>9s}"
                f"{fmt(g):>8s}{fmt(t):>9s}{fmt(ratio, '.1f'):>13s}{f'1/{round(1 / fraction)} epoch':>13s}")
        if not torch_cells:
            say(f"  PyTorch: {scaling['torch'].get('error')}")
    return buffer.getvalue()

