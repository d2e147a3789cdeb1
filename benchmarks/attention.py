"""Benchmark of cdl's attention kernel against PyTorch's scaled_dot_product_attention.

One forward and backward pass of scaled dot-product attention (batch 1, 4
heads, d = 64, float32; 1,024 and 4,096 tokens, without and with causal
masking), timed in cdl (``cdl._kernels.attention``) and in PyTorch
(``torch.nn.functional.scaled_dot_product_attention``, whose CPU path for
these inputs is its own flash-attention kernel)::

    python benchmarks/attention.py [--rounds 5] [--threads 2] [--tokens 1024 4096]
                                   [--seconds 1.0] [--quick]

Method
------
Every measurement runs in a fresh process of its own (this file run with
``--worker``), one framework per process, so that the frameworks' thread
pools, allocators and OpenMP runtimes never meet; each round runs every
workload in both frameworks, alternating which goes first. A worker fixes
the thread count (threadpoolctl for the BLAS and OpenMP pools, plus
``cdl.set_num_threads`` or ``torch.set_num_threads``), makes the inputs
from a fixed seed, runs one small call to load its libraries, resets the
process's peak resident memory (``VmHWM``, by writing 5 to
``/proc/self/clear_refs``) to its resident memory, runs one forward and backward
pass at the measured size (outputs and gradients allocated inside the
step, as a layer would), and reports the growth of the peak as the step's
peak memory, which includes those outputs and gradients (listed beside
it). It then times steps for ``--seconds`` (at least 3) and
reports their median. The table gives, per workload, the median over the
rounds of each framework's time, their ratio (cdl / PyTorch, from the
same rounds) and the peak memory of each next to the size of one (T, T)
float32 score matrix of one head, which neither should allocate.

The machine is shared and timings drift: read the ratios, not the
absolute times.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

BATCH, HEADS, DIM = 1, 4, 64
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _peak_kib(field="VmHWM"):
    """The process's peak resident memory (VmHWM) in KiB, or None off Linux."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak_kib():
    """Reset the peak to the resident memory (Linux 4.0 and later) and return
    it, so that the peak memory the loading of the libraries and the inputs
    reached does not hide the step's; without the reset, the peak so far."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return _peak_kib("VmRSS")
    except OSError:
        return _peak_kib()


def _cdl_step(tokens, causal):
    import numpy as np

    from cdl._kernels import attention

    rng = np.random.default_rng(0)
    B = BATCH * HEADS
    Q, K, V, dO = (rng.standard_normal((B, tokens, DIM), dtype=np.float32) for _ in range(4))

    def step():
        O = np.empty_like(Q)
        LSE = np.empty((B, tokens))
        attention.forward(Q, K, V, O, LSE, None, causal, None, None, HEADS)
        dQ, dK, dV = np.empty_like(Q), np.empty_like(K), np.empty_like(V)
        attention.backward(Q, K, V, O, dO, LSE, dQ, dK, dV, None, causal, None, None, HEADS)
        return dQ

    return step


def _torch_step(tokens, causal):
    import torch
    import torch.nn.functional as F

    gen = torch.Generator().manual_seed(0)
    q, k, v, do = (torch.randn(BATCH, HEADS, tokens, DIM, generator=gen) for _ in range(4))
    for t in (q, k, v):
        t.requires_grad_(True)

    def step():
        for t in (q, k, v):
            t.grad = None
        out = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        out.backward(do)
        return q.grad

    return step


def worker(task):
    """Run one measurement in this process; return its result as a dict."""
    framework, threads = task["framework"], task["threads"]
    from threadpoolctl import threadpool_limits
    if framework == "torch":
        import torch
        threadpool_limits(threads)
        torch.set_num_threads(threads)
        torch.set_num_interop_threads(1)
        make = _torch_step
    else:
        sys.path.insert(0, ROOT)
        import cdl
        threadpool_limits(threads)
        cdl.set_num_threads(threads)
        make = _cdl_step
    # Load the libraries and their buffers on a small call first.
    make(64, task["causal"])()
    step = make(task["tokens"], task["causal"])
    before = _reset_peak_kib()
    step()
    after = _peak_kib()
    times = []
    start = time.perf_counter()
    while len(times) < 3 or time.perf_counter() - start < task["seconds"]:
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return {"seconds": statistics.median(times), "steps": len(times),
            "peak_kib": None if before is None or after is None else max(after - before, 0)}


def _output_bytes(tokens):
    """What a step must allocate whatever its method: the output and the three
    input gradients (float32), and the log-sum-exp of each row (float64)."""
    return BATCH * HEADS * tokens * (4 * DIM * 4 + 8)


def _run_worker(task):
    env = dict(os.environ, OMP_NUM_THREADS=str(task["threads"]))
    if task["framework"] == "cdl":
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, env.get("PYTHONPATH")]))
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", json.dumps(task)],
                         capture_output=True, text=True, env=env, timeout=1800, cwd=ROOT)
    if out.returncode != 0:
        raise RuntimeError(f"worker {task} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--tokens", type=int, nargs="+", default=[1024, 4096])
    parser.add_argument("--seconds", type=float, default=1.0,
                        help="time each worker spends timing steps (at least 3 steps)")
    parser.add_argument("--no-causal", action="store_true", help="skip the causal workloads")
    parser.add_argument("--quick", action="store_true", help="one round, 0.3 s per worker")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0
    if args.quick:
        args.rounds, args.seconds = 1, 0.3
    workloads = [(t, c) for t in args.tokens for c in ((False,) if args.no_causal else (False, True))]
    results = {(w, f): [] for w in workloads for f in ("cdl", "torch")}
    for r in range(args.rounds):
        for i, (tokens, causal) in enumerate(workloads):
            order = ("cdl", "torch") if (r + i) % 2 == 0 else ("torch", "cdl")
            for framework in order:
                res = _run_worker({"framework": framework, "tokens": tokens, "causal": causal,
                                   "threads": args.threads, "seconds": args.seconds})
                results[(tokens, causal), framework].append(res)
                print(f"round {r + 1}: {framework} T={tokens} causal={causal}: "
                      f"{res['seconds'] * 1e3:.1f} ms, peak +{res['peak_kib']} KiB",
                      file=sys.stderr)
    print(f"Attention forward + backward, batch {BATCH}, {HEADS} heads, d = {DIM}, float32, "
          f"{args.threads} thread(s), median of {args.rounds} round(s)\n")
    print("| tokens | causal | cdl (ms) | PyTorch (ms) | cdl / PyTorch | cdl peak (MiB) "
          "| PyTorch peak (MiB) | outputs and gradients (MiB) | one (T, T) matrix (MiB) |")
    print("|---:|:---:|---:|---:|---:|---:|---:|---:|---:|")
    for tokens, causal in workloads:
        c = results[(tokens, causal), "cdl"]
        t = results[(tokens, causal), "torch"]
        ct = statistics.median(x["seconds"] for x in c)
        tt = statistics.median(x["seconds"] for x in t)
        ratio = statistics.median(a["seconds"] / b["seconds"] for a, b in zip(c, t))

        def peak(rs):
            vals = [x["peak_kib"] for x in rs if x["peak_kib"] is not None]
            return f"{statistics.median(vals) / 1024:.1f}" if vals else "n/a"

        print(f"| {tokens} | {'yes' if causal else 'no'} | {ct * 1e3:.1f} | {tt * 1e3:.1f} "
              f"| {ratio:.2f} | {peak(c)} | {peak(t)} | {_output_bytes(tokens) / 2**20:.1f} "
              f"| {tokens * tokens * 4 / 2**20:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
