"""Run one benchmark task in this process and print its result as JSON.

Usage: ``python <path of this file> '<task as JSON>'`` (or
``python -m cdl.bench.worker``). The harness starts fresh workers, so
frameworks never share a process (their thread pools and allocators would
disturb each other).

The harness runs this file as a script, not as ``cdl.bench.worker``: a
module of the cdl package would import cdl first, and cdl loads GNU
OpenMP with its own spin setting, which PyTorch (linked to the same
``libgomp.so.1``) would then inherit. As a script, a PyTorch or
scikit-learn worker loads its framework before anything of cdl, under the
user's OpenMP environment, and cdl's kernels run only in cdl's workers.
"""
import json
import os
import sys


def _limit_jax_threads(threads):
    """Size XLA's CPU thread pool before JAX starts.

    Current jaxlib has no thread-count flag (``intra_op_parallelism_threads``
    is gone from ``XLA_FLAGS``; ``XLA_FLAGS=--help`` lists what remains): its
    CPU client sizes its pool from the CPUs the process may run on. So the
    worker restricts its CPU affinity to ``threads`` CPUs when there are
    more, and keeps Eigen's multi-threaded mode only for more than one.
    """
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    flag = f"--xla_cpu_multi_thread_eigen={'true' if threads > 1 else 'false'}"
    os.environ["XLA_FLAGS"] = " ".join(filter(None, [os.environ.get("XLA_FLAGS"), flag]))
    allowed = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if len(allowed) > threads:
        os.sched_setaffinity(0, allowed[:threads])


_LIMITED = set()
#: Per framework, the resident memory (MiB) after its import, before any task.
_BASELINE = {}


def _limit_threads(framework, threads):
    """Fix the thread count before any work, once per process: BLAS pools for
    cdl and NumPy (and cdl's own knob, which sizes every pool cdl uses),
    intra-op threads for PyTorch, the CPU client's pool for JAX."""
    if (framework, threads) in _LIMITED:
        return
    _LIMITED.add((framework, threads))
    if framework == "jax":
        _limit_jax_threads(threads)
    from threadpoolctl import threadpool_limits
    threadpool_limits(threads)
    if framework == "cdl":
        import cdl
        cdl.set_num_threads(threads)
    elif framework == "torch":
        import torch
        torch.set_num_threads(threads)
        torch.set_num_interop_threads(1)
    elif framework == "sklearn":
        import sklearn.neural_network  # noqa: F401  (its runtimes load first)


def _workloads():
    """The workloads module, without importing the cdl package when this
    file runs as a script (cdl's workloads import cdl when they start)."""
    if __package__:
        from cdl.bench import workloads
    else:
        import workloads  # this file's folder is first on sys.path
    return workloads


def _table(framework, **functions):
    """The workload function of ``framework`` among ``functions`` (named by framework)."""
    if framework not in functions:
        raise ValueError(f"no {framework} version of this workload")
    return functions[framework]


def run(task):
    """Run one task; its result: times (and what the kind adds), the
    process's resident memory after the framework's import and before the
    task (``baseline_mib``) and the task's own growth of the peak resident
    memory above that (``work_peak_mib``; attention reports one pass's)."""
    _limit_threads(task["framework"], task["threads"])
    w = _workloads()
    # Once per process, before any task: later tasks find earlier ones' residue.
    baseline = _BASELINE.setdefault(task["framework"], w.resident_mib())
    if task["kind"] == "sgemm":
        return {**_run_kind(task, w), "baseline_mib": baseline}
    result, peak = w.call_with_peak(lambda: _run_kind(task, w))
    result.setdefault("work_peak_mib", peak)
    result["baseline_mib"] = baseline
    return result


def _run_kind(task, w):
    framework, kind = task["framework"], task["kind"]
    result = {}
    seconds = task.get("min_seconds", 0.3)
    if kind == "train":
        fn = _table(framework, cdl=w.cdl_train, torch=w.torch_train, numpy=w.numpy_train,
                    jax=w.jax_train)
        result["times"] = fn(tuple(task["sizes"]), task["batch"], task["optimizer"],
                             task["steps"], seconds)
    elif kind == "predict":
        if framework == "onnxruntime":
            result["times"] = w.onnxruntime_predict(tuple(task["sizes"]), task["n"], seconds,
                                                    task["threads"])
        else:
            fn = _table(framework, cdl=w.cdl_predict, torch=w.torch_predict,
                        numpy=w.numpy_predict, jax=w.jax_predict)
            result["times"] = fn(tuple(task["sizes"]), task["n"], seconds)
    elif kind == "fit_digits":
        fn = _table(framework, cdl=w.cdl_fit_digits, torch=w.torch_fit_digits,
                    sklearn=w.sklearn_fit_digits)
        elapsed, accuracy = fn()
        result["times"] = [elapsed]
        result["accuracy"] = accuracy
    elif kind == "cnn":
        fn = _table(framework, cdl=w.cdl_cnn_train, torch=w.torch_cnn_train,
                    jax=w.jax_cnn_train)
        result["times"] = fn(task["case"], task["steps"], seconds)
    elif kind == "conv":
        fn = _table(framework, cdl=w.cdl_conv, torch=w.torch_conv, jax=w.jax_conv)
        result["times"] = fn(task["case"], seconds)
    elif kind == "rnn":
        fn = _table(framework, cdl=w.cdl_rnn_train, torch=w.torch_rnn_train,
                    jax=w.jax_rnn_train)
        result["times"] = fn(task["cell"], task["steps"], seconds)
    elif kind == "encoder":
        fn = _table(framework, cdl=w.cdl_encoder_train, torch=w.torch_encoder_train)
        result["times"] = fn(task["case"], task["steps"], seconds)
    elif kind == "attention":
        fn = _table(framework, cdl=w.cdl_attention, torch=w.torch_attention)
        result["times"], result["work_peak_mib"] = fn(task["tokens"], task["heads"],
                                                      task["dim"], seconds)
    elif kind == "elementwise":
        fn = _table(framework, cdl=w.cdl_elementwise, torch=w.torch_elementwise)
        result["times"] = fn(task["n"], seconds, task["threads"])
    elif kind == "sgemm":
        result["gflops"] = w.sgemm_gflops(task.get("n", 2048), seconds)
    else:
        raise ValueError(f"unknown task kind {kind!r}")
    return result


def run_batch(batch):
    """Run ``batch["tasks"]`` in order in this process (one framework, set up
    once); their results in a list. Every task still warms up before it is
    timed; sharing the process saves an interpreter start and a framework
    import per measurement."""
    return [run({"framework": batch["framework"], "threads": batch["threads"], **task})
            for task in batch["tasks"]]


def main():
    task = json.loads(sys.argv[1])
    os.environ.setdefault("OMP_NUM_THREADS", str(task["threads"]))
    if "tasks" in task:
        print(json.dumps({"results": run_batch(task)}))
    else:
        print(json.dumps(run(task)))


if __name__ == "__main__":
    main()
