"""Benchmarks of cdl against PyTorch, JAX, plain NumPy, ONNX Runtime and scikit-learn.

Run with ``python -m cdl bench`` (or ``python benchmarks/run.py``). Each
measurement runs in a fresh worker process; frameworks alternate within
every round, and the reported figure is the median over rounds. Because
absolute times drift on a shared machine, the table's main columns are
ratios measured in the same run: cdl's time divided by the other
framework's (below 1 means cdl is faster). Compute-bound rows also give
cdl's arithmetic rate as a percentage of the machine's sgemm rate, and
the elementwise kernels their memory traffic against a bandwidth
reference, both measured in the same run.

Workload groups (``--only``): ``dense`` (MLP training steps), ``cnn``
(two small CNNs), ``conv`` (one convolution layer's forward and
backward), ``rnn`` (LSTM, GRU, SimpleRNN), ``predict`` (MLP inference),
``transformer`` (an encoder layer's training step, and attention's
forward and backward at 1,024 and 4,096 tokens with its peak memory),
``elementwise`` (activations, softmax, Adam on arrays larger than the
caches) and ``digits`` (an end-to-end fit). PyTorch, JAX (with optax),
ONNX Runtime (with onnx) and scikit-learn are optional: a framework that
is not installed is left out with a note.
"""
import argparse
import datetime
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time

from cdl.bench.workloads import (ATTENTION_DIM, ATTENTION_HEADS, ATTENTION_TOKENS,
                                 BANDWIDTH_REFERENCE, CNN_CASES, CONV_CASES, ELEMENTWISE_BYTES,
                                 ELEMENTWISE_SIZE, ENCODER_CASE, RNN_CELLS, attention_flops,
                                 cnn_flops, conv_flops, encoder_flops, train_flops)

#: Training configurations: name -> (layer sizes, batch size).
TRAIN_CONFIGS = {
    "tiny": ((32, 64, 64, 10), 32),
    "mnist-small": ((784, 128, 10), 64),
    "mnist-wide": ((784, 512, 512, 10), 128),
    "wide": ((1024, 2048, 2048, 10), 256),
}
PREDICT_CASES = {"predict-1": 1, "predict-10000": 10_000}
#: Workload groups in the order they run.
GROUPS = ("dense", "cnn", "conv", "rnn", "transformer", "predict", "elementwise", "digits")
#: The frameworks compared with cdl (scikit-learn joins the digits fit only).
FRAMEWORKS = ("cdl", "torch", "jax", "numpy", "onnxruntime")
#: Frameworks that have a version of each group's workloads.
GROUP_FRAMEWORKS = {
    "dense": ("cdl", "torch", "jax", "numpy"),
    "cnn": ("cdl", "torch", "jax"),
    "conv": ("cdl", "torch", "jax"),
    "rnn": ("cdl", "torch", "jax"),
    "transformer": ("cdl", "torch"),
    "predict": ("cdl", "torch", "jax", "numpy", "onnxruntime"),
    "elementwise": ("cdl", "torch"),
    "digits": ("cdl", "torch", "sklearn"),
}
#: Column labels of the frameworks in the tables.
LABELS = {"torch": "torch", "jax": "jax", "numpy": "numpy", "onnxruntime": "onnxrt",
          "sklearn": "sklearn"}
_MODULES = {"cdl": ("cdl",), "numpy": ("numpy",), "torch": ("torch",),
            "jax": ("jax", "optax"), "onnxruntime": ("onnxruntime", "onnx"),
            "sklearn": ("sklearn",)}


def available(framework):
    """Whether a framework can be imported here (all but cdl and NumPy are
    optional; JAX needs optax too, ONNX Runtime needs onnx for cdl's export)."""
    for module in _MODULES[framework]:
        try:
            __import__(module)
        except ImportError:
            return False
    return True


def worker_command(task):
    """The command and environment that run ``task`` in a fresh worker.

    The worker file runs as a script (see ``cdl.bench.worker``), with the
    folder that holds this cdl on ``PYTHONPATH`` so that cdl's workloads
    import this same cdl.
    """
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(task["threads"])
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    worker = os.path.join(os.path.dirname(os.path.abspath(__file__)), "worker.py")
    return [sys.executable, worker, json.dumps(task)], env


def run_worker(task, timeout=900):
    """Run one task in a fresh interpreter; return its JSON result."""
    command, env = worker_command(task)
    proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark worker failed for {task}:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _median_times(times):
    """Median of a worker's times: a list of seconds, or a dict of such lists."""
    if isinstance(times, dict):
        return {key: statistics.median(value) for key, value in times.items()}
    return statistics.median(times)


def _median_rounds(rounds):
    if isinstance(rounds[0], dict):
        return {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}
    return statistics.median(rounds)


def measure_cases(cases, rounds, threads):
    """Measure several cases, each on its own frameworks, in ``rounds`` rounds.

    ``cases`` maps a case name to ``(frameworks, task)`` (a task without its
    framework and thread count). In each round every framework runs in one
    fresh worker process all the cases it takes part in, one after the
    other; frameworks alternate, who goes first rotating between rounds.
    Returns, per case and framework, the median over rounds of each round's
    median time (per kernel when a task times several) and, where the
    worker can measure memory (Linux), each round's resident memory of the
    worker after its framework's import (``baseline_mib``, a list) and the
    task's own growth of the peak resident memory over the worker's size
    before it (``work_peak_mib``, a list).
    """
    names = []
    for fws, _ in cases.values():
        names += [fw for fw in fws if fw not in names]
    per_round = {case: {fw: [] for fw in fws} for case, (fws, _) in cases.items()}
    extra = {case: {fw: {} for fw in fws} for case, (fws, _) in cases.items()}
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for fw in order:
            mine = [case for case, (fws, _) in cases.items() if fw in fws]
            batch = {"framework": fw, "threads": threads,
                     "tasks": [cases[case][1] for case in mine]}
            for case, result in zip(mine, run_worker(batch)["results"]):
                per_round[case][fw].append(_median_times(result["times"]))
                slot = extra[case][fw]
                if result.get("baseline_mib") is not None:
                    slot.setdefault("baseline_mib", []).append(result["baseline_mib"])
                if result.get("work_peak_mib") is not None:
                    slot.setdefault("work_peak_mib", []).append(result["work_peak_mib"])
                if "accuracy" in result:
                    slot.setdefault("accuracy", []).append(result["accuracy"])
    return {case: {fw: {"seconds": _median_rounds(per_round[case][fw]), **extra[case][fw]}
                   for fw in per_round[case]}
            for case in cases}


def measure(tasks_by_framework, rounds):
    """``measure_cases`` for one case: ``tasks_by_framework`` maps each
    framework to its full task (with ``"framework"`` and ``"threads"``)."""
    fws = list(tasks_by_framework)
    first = tasks_by_framework[fws[0]]
    tasks = {fw: {k: v for k, v in task.items() if k not in ("framework", "threads")}
             for fw, task in tasks_by_framework.items()}
    if any(task != tasks[fws[0]] for task in tasks.values()):
        raise ValueError("measure needs the same task for every framework")
    return measure_cases({"case": (fws, tasks[fws[0]])}, rounds, first["threads"])["case"]


def import_time(module, threads):
    """Seconds to import ``module`` in a fresh interpreter (best of three)."""
    best = float("inf")
    for _ in range(3):
        code = f"import time; t = time.perf_counter(); import {module}; " \
               "print(time.perf_counter() - t)"
        env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads), JAX_PLATFORMS="cpu")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env=env, check=True).stdout
        best = min(best, float(out))
    return best


def _has_layers(*names):
    from cdl import layers
    return all(hasattr(layers, name) for name in names)


def run(groups=GROUPS, configs=None, optimizers=("sgd", "adam"), rounds=3, threads=2,
        min_seconds=0.3, frameworks=FRAMEWORKS, log=print):
    """Run the benchmarks and return the results as a dict (see ``format_report``).

    Parameters
    ----------
    groups : sequence of str
        Workload groups to run, among ``GROUPS``.
    configs : sequence of str, optional
        Dense training configurations (``TRAIN_CONFIGS``); default all.
    optimizers : sequence of {"sgd", "adam"}
        Optimizers of the dense training steps.
    rounds, threads, min_seconds : int, int, float
        Rounds of alternating workers, the thread count given to every
        framework, and the shortest timed span of one measurement.
    frameworks : sequence of str
        Frameworks to compare with (``FRAMEWORKS``); those not installed
        are left out with a note through ``log``.
    """
    unknown = set(groups) - set(GROUPS)
    if unknown:
        raise ValueError(f"unknown workload groups {sorted(unknown)}; choose from {GROUPS}")
    missing = [f for f in frameworks if not available(f)]
    for f in missing:
        log(f"note: {f} is not installed ({', '.join(_MODULES[f])}); its columns are left out")
    frameworks = ["cdl"] + [f for f in frameworks if f != "cdl" and f not in missing]
    configs = list(TRAIN_CONFIGS) if configs is None else list(configs)
    results = {"date": datetime.date.today().isoformat(), "threads": threads,
               "rounds": rounds, "frameworks": frameworks, "python": platform.python_version(),
               "versions": _versions(frameworks), "groups": list(groups),
               "train": {}, "predict": {}, "conv": {}, "transformer": {}, "elementwise": {},
               "digits": None}
    # The machine's load: other processes' threads take the cores the
    # frameworks' thread pools wait for, and every ratio then says less.
    results["load_average"] = [round(os.getloadavg()[0], 2)] if hasattr(os, "getloadavg") else []
    sgemm_task = {"framework": "cdl", "kind": "sgemm", "threads": threads, "min_seconds": 1.0}
    sgemm = run_worker(sgemm_task)["gflops"]
    log(f"sgemm roofline of the BLAS cdl calls: {sgemm:.1f} GFLOP/s, {threads} thread(s)")

    def compare(group, cases, flops=None):
        """Measure a group's cases: name -> task, on the group's frameworks."""
        fws = [fw for fw in frameworks if fw in GROUP_FRAMEWORKS[group]]
        measured = measure_cases({name: (fws, {"min_seconds": min_seconds, **task})
                                  for name, task in cases.items()}, rounds, threads)
        for name, res in measured.items():
            work = (flops or {}).get(name)
            res["gflops"] = float("nan") if work is None else work / res["cdl"]["seconds"] / 1e9
            log(_line(name, res, fws))
        return measured

    if "dense" in groups:
        cases, flops = {}, {}
        for name in configs:
            sizes, batch = TRAIN_CONFIGS[name]
            steps = max(5, min(400, int(2e8 / max(train_flops(sizes, batch), 1))))
            for opt in optimizers:
                cases[f"{name}/{opt}"] = {"kind": "train", "sizes": sizes, "batch": batch,
                                          "optimizer": opt, "steps": steps}
                flops[f"{name}/{opt}"] = train_flops(sizes, batch)
        if cases:
            results["train"].update(compare("dense", cases, flops))
    if "cnn" in groups and _has_layers("Conv2D", "MaxPool2D"):
        results["train"].update(compare(
            "cnn", {f"{name}/adam": {"kind": "cnn", "case": case, "steps": 10}
                    for name, case in CNN_CASES.items()},
            {f"{name}/adam": cnn_flops(case) for name, case in CNN_CASES.items()}))
    if "conv" in groups and _has_layers("Conv2D"):
        results["conv"] = compare(
            "conv", {name: {"kind": "conv", "case": case} for name, case in CONV_CASES.items()},
            {name: conv_flops(case) for name, case in CONV_CASES.items()})
    if "rnn" in groups and _has_layers("LSTM", "GRU", "SimpleRNN"):
        results["train"].update(compare(
            "rnn", {f"{cell}-32x16-64/adam": {"kind": "rnn", "cell": cell, "steps": 10}
                    for cell in RNN_CELLS}))
    if "transformer" in groups and _has_layers("TransformerEncoder"):
        case = ENCODER_CASE
        name = "encoder 64x64 h4 ff128 b32/adam"
        steps = 10
        cases = {name: {"kind": "encoder", "case": case, "steps": steps}}
        flops = {name: encoder_flops(case)}
        for tokens in ATTENTION_TOKENS:
            label = f"attention T={tokens} fwd+bwd"
            cases[label] = {"kind": "attention", "tokens": tokens, "heads": ATTENTION_HEADS,
                            "dim": ATTENTION_DIM}
            flops[label] = attention_flops(1, ATTENTION_HEADS, tokens, ATTENTION_DIM)
        results["transformer"] = compare("transformer", cases, flops)
    if "predict" in groups:
        sizes = TRAIN_CONFIGS["mnist-wide"][0]
        results["predict"] = compare(
            "predict", {name: {"kind": "predict", "sizes": sizes, "n": n}
                        for name, n in PREDICT_CASES.items()})
    if "elementwise" in groups:
        res = compare("elementwise", {"elementwise": {"kind": "elementwise",
                                                      "n": ELEMENTWISE_SIZE}})["elementwise"]
        results["elementwise"] = _elementwise_rows(res)
        results["bandwidth_gbps"] = results["elementwise"].pop(BANDWIDTH_REFERENCE)["gbps"]
        log(f"bandwidth reference ({BANDWIDTH_REFERENCE}, {threads} thread(s)): "
            f"{results['bandwidth_gbps']:.1f} GB/s")
    if "digits" in groups:
        fws = [fw for fw in GROUP_FRAMEWORKS["digits"]
               if (fw in frameworks or fw == "sklearn") and available(fw)]
        res = measure_cases({"digits": (fws, {"kind": "fit_digits"})}, rounds, threads)["digits"]
        results["digits"] = res
        log(_line("digits fit", res, fws))
    # The roofline is what the machine reaches: the better of a measurement
    # before and one after the workloads, which a busy spell may have slowed.
    if any(g in groups for g in ("dense", "cnn", "conv", "transformer")):
        sgemm = max(sgemm, run_worker(sgemm_task)["gflops"])
    results["sgemm_gflops"] = sgemm
    if results["load_average"]:
        results["load_average"].append(round(os.getloadavg()[0], 2))
    results["import_seconds"] = {m: import_time(m, threads)
                                 for m in ("scipy.linalg.cython_blas", "cdl")
                                 + tuple(f for f in ("torch", "jax") if f in frameworks)}
    return results


def _versions(frameworks):
    versions = {}
    for fw in frameworks + ["sklearn"]:
        if available(fw):
            module = __import__(_MODULES[fw][0])
            versions[fw] = getattr(module, "__version__", "?")
    return versions


def _elementwise_rows(res):
    """Per kernel: its bytes an element, each framework's seconds, cdl's GB/s."""
    rows = {}
    for kernel, seconds in res["cdl"]["seconds"].items():
        nbytes = 12 if kernel == BANDWIDTH_REFERENCE else ELEMENTWISE_BYTES[kernel]
        row = {fw: {"seconds": r["seconds"][kernel]} for fw, r in res.items()
               if isinstance(r, dict) and kernel in r.get("seconds", {})}
        row["bytes_per_element"] = nbytes
        row["gbps"] = nbytes * ELEMENTWISE_SIZE / seconds / 1e9
        rows[kernel] = row
    return rows


def _line(label, res, frameworks):
    cdl_s = res["cdl"]["seconds"]
    if isinstance(cdl_s, dict):  # several kernels: the table shows them
        return f"{label:<22} measured ({len(cdl_s)} kernels)"
    parts = [f"{label:<22} cdl {cdl_s * 1e3:9.3f} ms"]
    for fw in frameworks:
        if fw != "cdl" and fw in res:
            parts.append(f"{fw} {res[fw]['seconds'] * 1e3:9.3f} ms "
                         f"(ratio {cdl_s / res[fw]['seconds']:.3f})")
    return "  ".join(parts)


def _ratio(res, fw):
    if fw not in res:
        return "-"
    return f"{res['cdl']['seconds'] / res[fw]['seconds']:.2f}"


def format_report(results):
    """Markdown tables: per workload cdl's time, its ratio to each framework
    (cdl time / other time), and for compute-bound rows cdl's GFLOP/s and
    their percentage of the sgemm rate; then the elementwise kernels."""
    others = [f for f in results["frameworks"] if f != "cdl"]
    sgemm = results["sgemm_gflops"]
    threads = f"{results['threads']} thread{'s' if results['threads'] != 1 else ''}"
    lines = [f"Measured {results['date']}, {threads}, median of "
             f"{results['rounds']} rounds; cdl/x = cdl time / x time (below 1: cdl faster); "
             f"% of sgemm = cdl GFLOP/s / sgemm GFLOP/s.", ""]
    has_torch = "torch" in others
    header = ["workload", "cdl"] + [f"cdl/{LABELS[f]}" for f in others] \
        + ["cdl GFLOP/s", "% of sgemm", "cdl MiB"] + (["MiB cdl/torch"] if has_torch else [])
    if results["train"] or results.get("conv") or results["predict"]:
        lines += ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]

    def row(label, res):
        cells = [label, _fmt(res["cdl"]["seconds"])] + [_ratio(res, f) for f in others]
        gflops = res.get("gflops", float("nan"))
        if math.isnan(gflops):  # not a compute-bound row
            cells += ["", ""]
        else:
            cells += [f"{gflops:.1f}", f"{100 * gflops / sgemm:.0f}%"]
        cells.append(_peak(res["cdl"]))
        if has_torch:
            cells.append(_memory_ratio(res, "torch"))
        return "| " + " | ".join(cells) + " |"

    for name, res in results["train"].items():
        lines.append(row(f"train step {name}", res))
    for name, res in results.get("conv", {}).items():
        lines.append(row(f"{name} fwd+bwd", res))
    for name, res in results["predict"].items():
        lines.append(row(name, res))
    if lines[-1]:
        lines.append("")
    baselines = _baselines(results)
    if baselines:
        lines += ["Memory: cdl MiB is how far a task raised its worker's peak resident memory "
                  "(model, data, optimizer state and the work's own buffers; `VmHWM`, reset "
                  "before the task) above the worker's size before it; MiB cdl/torch divides "
                  "it by PyTorch's. The workers' resident memory after importing their "
                  "framework, before any task: " + ", ".join(
                      f"{LABELS.get(fw, fw)} {mib:.0f} MiB" for fw, mib in baselines.items())
                  + ".", ""]
    if results.get("transformer"):
        lines += _transformer_table(results, sgemm) + [""]
    lines.append(f"sgemm roofline (the BLAS cdl calls, 2048^3): {sgemm:.1f} GFLOP/s")
    load = results.get("load_average")
    if load:
        lines.append(f"1-minute load average before and after the workloads: "
                     f"{' and '.join(f'{value:.1f}' for value in load)} "
                     f"({os.cpu_count()} CPUs)")
    elementwise = results.get("elementwise") or {}
    if elementwise:
        bandwidth = results["bandwidth_gbps"]
        has_torch = any("torch" in r for r in elementwise.values())
        lines += ["", f"Elementwise kernels on {ELEMENTWISE_SIZE:,} float32 per array "
                  f"({ELEMENTWISE_SIZE * 4 >> 20} MiB); bandwidth reference "
                  f"`np.add(a, b, out=c)` on as many threads: {bandwidth:.1f} GB/s; "
                  "x bandwidth = cdl time / the time of its bytes at that bandwidth.", "",
                  "| kernel | bytes/element | cdl | cdl GB/s | x bandwidth |"
                  + (" cdl/torch |" if has_torch else ""),
                  "|---|---:|---:|---:|---:|" + ("---:|" if has_torch else "")]
        for kernel, r in elementwise.items():
            cells = [kernel, str(r["bytes_per_element"]), _fmt(r["cdl"]["seconds"]),
                     f"{r['gbps']:.1f}", f"{bandwidth / r['gbps']:.2f}"]
            if has_torch:
                cells.append(_ratio(r, "torch"))
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    if results.get("digits"):
        res = results["digits"]
        parts = []
        for fw, r in res.items():
            acc = statistics.median(r["accuracy"])
            ratio = "" if fw == "cdl" else f", cdl/{fw} {res['cdl']['seconds'] / r['seconds']:.3f}"
            parts.append(f"{fw} {r['seconds']:.2f} s (test accuracy {acc:.4f}{ratio})")
        lines.append("digits fit (64-128-128-10, Adam, batch 32, 30 epochs): " + "; ".join(parts))
    imports = results.get("import_seconds", {})
    if imports:
        lines.append("import time: " + ", ".join(f"{m} {s:.3f} s" for m, s in imports.items()))
    versions = results.get("versions", {})
    if versions:
        lines.append("versions: " + ", ".join(f"{fw} {v}" for fw, v in versions.items()))
    return "\n".join(lines)


def _peak(res):
    values = res.get("work_peak_mib") if res else None
    return f"{statistics.median(values):.1f}" if values else "-"


def _memory_ratio(res, fw):
    """cdl's median peak growth over ``fw``'s, or "-" where one is missing or 0."""
    mine, theirs = (res.get(name, {}).get("work_peak_mib") for name in ("cdl", fw))
    if not mine or not theirs or statistics.median(theirs) <= 0:
        return "-"
    return f"{statistics.median(mine) / statistics.median(theirs):.2f}"


def _baselines(results):
    """Per framework, the median resident memory of its workers after import (MiB)."""
    values = {}
    for group in ("train", "conv", "predict", "transformer"):
        for res in (results.get(group) or {}).values():
            for fw, r in res.items():
                if isinstance(r, dict) and r.get("baseline_mib"):
                    values.setdefault(fw, []).extend(r["baseline_mib"])
    return {fw: statistics.median(v) for fw, v in values.items()}


def _transformer_table(results, sgemm):
    """The transformer group's table: times, the ratio to PyTorch, the
    roofline columns and each framework's peak memory growth over the work."""
    has_torch = "torch" in results["frameworks"]
    c = ENCODER_CASE
    lines = [f"Transformer: one `TransformerEncoder` training step ({c['tokens']} tokens x "
             f"d_model {c['d_model']}, {c['heads']} heads, dim_feedforward "
             f"{c['dim_feedforward']}, batch {c['batch']}, post-norm, ReLU, dropout 0.0, "
             "Adam, MSE loss, float32) against `nn.TransformerEncoderLayer(..., "
             "batch_first=True)`, and attention's forward and backward (batch 1, "
             f"{ATTENTION_HEADS} heads, d = {ATTENTION_DIM}, no mask) against "
             "`F.scaled_dot_product_attention`; peak = growth of the process's peak "
             "resident memory in MiB, over one pass for attention (outputs and gradients "
             "included), over the whole task for the encoder (model, data, optimizer state "
             "and the steps' buffers).", "",
             "| workload | cdl | " + ("cdl/torch | " if has_torch else "")
             + "cdl GFLOP/s | % of sgemm | cdl peak (MiB) |"
             + (" torch peak (MiB) |" if has_torch else ""),
             "|---|---:|" + ("---:|" if has_torch else "") + "---:|---:|---:|"
             + ("---:|" if has_torch else "")]
    for name, res in results["transformer"].items():
        cells = [name, _fmt(res["cdl"]["seconds"])]
        if has_torch:
            cells.append(_ratio(res, "torch"))
        gflops = res.get("gflops", float("nan"))
        cells += ["", ""] if math.isnan(gflops) else [f"{gflops:.1f}",
                                                        f"{100 * gflops / sgemm:.0f}%"]
        cells.append(_peak(res["cdl"]))
        if has_torch:
            cells.append(_peak(res.get("torch")))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _fmt(seconds):
    return f"{seconds * 1e3:.3f} ms" if seconds < 1 else f"{seconds:.2f} s"


def _group_list(text):
    groups = [g for part in text for g in part.split(",") if g]
    unknown = [g for g in groups if g not in GROUPS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown group(s) {unknown}; choose from {GROUPS}")
    return groups


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m cdl bench",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", metavar="GROUP",
                        help="run only these workload groups (comma- or space-separated): "
                             + ", ".join(GROUPS))
    parser.add_argument("--configs", nargs="*", choices=list(TRAIN_CONFIGS), default=None,
                        help="dense training configurations (none: no dense rows)")
    parser.add_argument("--optimizers", nargs="*", choices=["sgd", "adam"], default=["sgd", "adam"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--min-seconds", type=float, default=0.3,
                        help="shortest timed span per measurement")
    parser.add_argument("--frameworks", nargs="*", default=list(FRAMEWORKS),
                        choices=list(FRAMEWORKS))
    for group in GROUPS:
        parser.add_argument(f"--no-{group}", action="store_true",
                            help=f"leave out the {group} group")
    parser.add_argument("--quick", action="store_true",
                        help="one round of the tiny dense configuration only (a smoke test)")
    parser.add_argument("--json", help="also write the raw results to this file")
    args = parser.parse_args(argv)
    try:
        groups = _group_list(args.only) if args.only else list(GROUPS)
    except argparse.ArgumentTypeError as exc:
        parser.error(str(exc))
    if args.configs is not None and not args.configs:
        groups = [g for g in groups if g != "dense"]
    if args.quick:
        args.configs, args.optimizers, args.rounds, args.min_seconds = ["tiny"], ["sgd"], 1, 0.05
        groups = ["dense"]
    groups = [g for g in groups if not getattr(args, f"no_{g}")]
    start = time.perf_counter()
    results = run(groups, args.configs, args.optimizers, args.rounds, args.threads,
                  args.min_seconds, args.frameworks)
    print()
    print(format_report(results))
    print(f"\n(benchmark took {time.perf_counter() - start:.0f} s)")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1)
    return 0
