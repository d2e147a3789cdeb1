"""Benchmarks of cdl against PyTorch, plain NumPy and scikit-learn.

Run with ``python -m cdl bench`` (or ``python benchmarks/run.py``). Each
measurement runs in a fresh worker process; frameworks alternate within
every round, and the reported figure is the median over rounds. Because
absolute times drift on a shared machine, the table's main columns are
ratios measured in the same run: cdl's time divided by the other
framework's (below 1 means cdl is faster).
"""
import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time

from cdl.bench.workloads import cnn_flops, train_flops

#: Training configurations: name -> (layer sizes, batch size).
TRAIN_CONFIGS = {
    "tiny": ((32, 64, 64, 10), 32),
    "mnist-small": ((784, 128, 10), 64),
    "mnist-wide": ((784, 512, 512, 10), 128),
    "wide": ((1024, 2048, 2048, 10), 256),
}
PREDICT_CASES = {"predict-1": 1, "predict-10000": 10_000}


def available(framework):
    """Whether a framework can be imported here (PyTorch and scikit-learn are optional)."""
    module = {"cdl": "cdl", "numpy": "numpy", "torch": "torch", "sklearn": "sklearn"}[framework]
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def run_worker(task, timeout=900):
    """Run one task in a fresh interpreter; return its JSON result."""
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(task["threads"])
    proc = subprocess.run([sys.executable, "-m", "cdl.bench.worker", json.dumps(task)],
                          capture_output=True, text=True, timeout=timeout, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark worker failed for {task}:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure(tasks_by_framework, rounds):
    """Alternate frameworks within each round (rotating who goes first);
    return per framework the median over rounds of each round's median time,
    and the largest peak memory."""
    names = list(tasks_by_framework)
    per_round = {name: [] for name in names}
    extra = {name: {} for name in names}
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            result = run_worker(tasks_by_framework[name])
            per_round[name].append(statistics.median(result["times"]))
            extra[name]["peak_rss_mib"] = max(extra[name].get("peak_rss_mib", 0),
                                              result["peak_rss_mib"])
            if "accuracy" in result:
                extra[name].setdefault("accuracy", []).append(result["accuracy"])
    return {name: {"seconds": statistics.median(per_round[name]), **extra[name]}
            for name in names}


def import_time(module, threads):
    """Seconds to import ``module`` in a fresh interpreter (best of three)."""
    best = float("inf")
    for _ in range(3):
        code = f"import time; t = time.perf_counter(); import {module}; " \
               "print(time.perf_counter() - t)"
        env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads))
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env=env, check=True).stdout
        best = min(best, float(out))
    return best


def _has_conv():
    from cdl import layers
    return hasattr(layers, "Conv2D")


def _has_recurrent():
    from cdl import layers
    return hasattr(layers, "LSTM") and hasattr(layers, "GRU")


def run(configs=None, optimizers=("sgd", "adam"), rounds=3, threads=2, min_seconds=0.3,
        frameworks=("cdl", "torch", "numpy"), digits=True, predict=True, cnn=True, rnn=True,
        log=print):
    """Run the benchmarks and return the results as a dict (see ``format_report``)."""
    frameworks = [f for f in frameworks if available(f)]
    configs = list(TRAIN_CONFIGS) if configs is None else list(configs)
    results = {"date": datetime.date.today().isoformat(), "threads": threads,
               "rounds": rounds, "frameworks": frameworks, "python": platform.python_version(),
               "train": {}, "predict": {}, "digits": None}
    sgemm = run_worker({"framework": "cdl", "kind": "sgemm", "threads": threads,
                        "min_seconds": 1.0})["gflops"]
    results["sgemm_gflops"] = sgemm
    log(f"sgemm roofline of the BLAS cdl calls: {sgemm:.1f} GFLOP/s ({threads} threads)")
    for name in configs:
        sizes, batch = TRAIN_CONFIGS[name]
        steps = max(5, min(400, int(2e8 / max(train_flops(sizes, batch), 1))))
        for opt in optimizers:
            tasks = {fw: {"framework": fw, "kind": "train", "sizes": sizes, "batch": batch,
                          "optimizer": opt, "steps": steps, "threads": threads,
                          "min_seconds": min_seconds} for fw in frameworks}
            res = measure(tasks, rounds)
            res["gflops"] = train_flops(sizes, batch) / res["cdl"]["seconds"] / 1e9
            results["train"][f"{name}/{opt}"] = res
            log(_line(f"{name} {opt}", res, frameworks))
    if predict:
        sizes = TRAIN_CONFIGS["mnist-wide"][0]
        for name, n in PREDICT_CASES.items():
            tasks = {fw: {"framework": fw, "kind": "predict", "sizes": sizes, "n": n,
                          "threads": threads, "min_seconds": min_seconds} for fw in frameworks}
            res = measure(tasks, rounds)
            results["predict"][name] = res
            log(_line(name, res, frameworks))
    if cnn and _has_conv():
        fws = [fw for fw in ("cdl", "torch") if fw in frameworks]
        tasks = {fw: {"framework": fw, "kind": "cnn", "steps": 20, "threads": threads,
                      "min_seconds": min_seconds} for fw in fws}
        res = measure(tasks, rounds)
        res["gflops"] = cnn_flops() / res["cdl"]["seconds"] / 1e9
        results["train"]["small-cnn/sgd"] = res
        log(_line("small-cnn sgd", res, fws))
    if rnn and _has_recurrent():
        fws = [fw for fw in ("cdl", "torch") if fw in frameworks]
        for cell in ("lstm", "gru"):
            tasks = {fw: {"framework": fw, "kind": "rnn", "cell": cell, "steps": 10,
                          "threads": threads, "min_seconds": min_seconds} for fw in fws}
            res = measure(tasks, rounds)
            res["gflops"] = float("nan")
            results["train"][f"{cell}-32x16-64/adam"] = res
            log(_line(f"{cell} adam", res, fws))
    if digits:
        fws = [fw for fw in ("cdl", "torch", "sklearn") if available(fw)]
        tasks = {fw: {"framework": fw, "kind": "fit_digits", "threads": threads} for fw in fws}
        res = measure(tasks, rounds)
        results["digits"] = res
        log(_line("digits fit", res, fws))
    results["import_seconds"] = {m: import_time(m, threads)
                                 for m in ("scipy.linalg.cython_blas", "cdl")
                                 + (("torch",) if "torch" in frameworks else ())}
    return results


def _line(label, res, frameworks):
    cdl_s = res["cdl"]["seconds"]
    parts = [f"{label:<22} cdl {cdl_s * 1e3:9.3f} ms"]
    for fw in frameworks:
        if fw != "cdl" and fw in res:
            parts.append(f"{fw} {res[fw]['seconds'] * 1e3:9.3f} ms (ratio {cdl_s / res[fw]['seconds']:.3f})")
    return "  ".join(parts)


def format_report(results):
    """A Markdown table of ratios (cdl time / other time) and absolute times."""
    frameworks = [f for f in results["frameworks"] if f != "cdl"]
    lines = [f"Measured {results['date']}, {results['threads']} threads, median of "
             f"{results['rounds']} rounds; ratio = cdl time / other time (below 1: cdl faster).",
             "", "| workload | cdl | " + " | ".join(f"{f} | cdl/{f}" for f in frameworks)
             + " | cdl GFLOP/s | cdl peak MiB |",
             "|---|---:|" + "---:|---:|" * len(frameworks) + "---:|---:|"]

    def row(label, res, gflops=""):
        cells = [label, _fmt(res["cdl"]["seconds"])]
        for f in frameworks:
            if f in res:
                cells += [_fmt(res[f]["seconds"]), f"{res['cdl']['seconds'] / res[f]['seconds']:.3f}"]
            else:
                cells += ["-", "-"]
        cells += [gflops, f"{res['cdl']['peak_rss_mib']:.0f}"]
        return "| " + " | ".join(cells) + " |"

    for name, res in results["train"].items():
        gflops = "" if res["gflops"] != res["gflops"] else f"{res['gflops']:.1f}"  # NaN: not counted
        lines.append(row(f"train step {name}", res, gflops))
    for name, res in results["predict"].items():
        lines.append(row(name, res))
    lines.append("")
    lines.append(f"sgemm roofline (the BLAS cdl calls, 2048^3): {results['sgemm_gflops']:.1f} GFLOP/s")
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
    return "\n".join(lines)


def _fmt(seconds):
    return f"{seconds * 1e3:.3f} ms" if seconds < 1 else f"{seconds:.2f} s"


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m cdl bench", description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="*", choices=list(TRAIN_CONFIGS), default=None)
    parser.add_argument("--optimizers", nargs="*", choices=["sgd", "adam"], default=["sgd", "adam"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--min-seconds", type=float, default=0.3,
                        help="shortest timed span per measurement")
    parser.add_argument("--frameworks", nargs="*", default=["cdl", "torch", "numpy"],
                        choices=["cdl", "torch", "numpy"])
    parser.add_argument("--no-digits", action="store_true")
    parser.add_argument("--no-predict", action="store_true")
    parser.add_argument("--no-cnn", action="store_true")
    parser.add_argument("--no-rnn", action="store_true")
    parser.add_argument("--quick", action="store_true",
                        help="one round of the tiny configuration only (a smoke test)")
    parser.add_argument("--json", help="also write the raw results to this file")
    args = parser.parse_args(argv)
    if args.quick:
        args.configs, args.optimizers, args.rounds, args.min_seconds = ["tiny"], ["sgd"], 1, 0.05
        args.no_digits = args.no_predict = args.no_cnn = args.no_rnn = True
    start = time.perf_counter()
    results = run(args.configs, args.optimizers, args.rounds, args.threads, args.min_seconds,
                  args.frameworks, not args.no_digits, not args.no_predict, not args.no_cnn,
                  not args.no_rnn)
    print()
    print(format_report(results))
    print(f"\n(benchmark took {time.perf_counter() - start:.0f} s)")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1)
    return 0
