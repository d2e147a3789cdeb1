"""Run one benchmark task in this process and print its result as JSON.

Usage: ``python -m cdl.bench.worker '<task as JSON>'``. The harness starts
one worker per measurement, so frameworks never share a process (their
thread pools and allocators would disturb each other).
"""
import json
import os
import resource
import sys


def _limit_threads(framework, threads):
    """Fix the thread count before any work: BLAS pools for cdl and NumPy,
    intra-op threads for PyTorch."""
    from threadpoolctl import threadpool_limits
    threadpool_limits(threads)
    if framework == "torch":
        import torch
        torch.set_num_threads(threads)
        torch.set_num_interop_threads(1)


def run(task):
    from cdl.bench import workloads as w
    framework, kind = task["framework"], task["kind"]
    _limit_threads(framework, task["threads"])
    result = {}
    if kind == "train":
        fn = {"cdl": w.cdl_train, "torch": w.torch_train, "numpy": w.numpy_train}[framework]
        result["times"] = fn(tuple(task["sizes"]), task["batch"], task["optimizer"],
                             task["steps"], task["min_seconds"])
    elif kind == "predict":
        fn = {"cdl": w.cdl_predict, "torch": w.torch_predict,
              "numpy": w.numpy_predict}[framework]
        result["times"] = fn(tuple(task["sizes"]), task["n"], task["min_seconds"])
    elif kind == "fit_digits":
        fn = {"cdl": w.cdl_fit_digits, "torch": w.torch_fit_digits,
              "sklearn": w.sklearn_fit_digits}[framework]
        seconds, accuracy = fn()
        result["times"] = [seconds]
        result["accuracy"] = accuracy
    elif kind == "cnn":
        fn = {"cdl": w.cdl_cnn_train, "torch": w.torch_cnn_train}[framework]
        result["times"] = fn(task["steps"], task["min_seconds"])
    elif kind == "rnn":
        fn = {"cdl": w.cdl_rnn_train, "torch": w.torch_rnn_train}[framework]
        result["times"] = fn(task["cell"], task["steps"], task["min_seconds"])
    elif kind == "sgemm":
        result["gflops"] = w.sgemm_gflops(task.get("n", 2048), task["min_seconds"])
    elif kind == "import":
        result["times"] = [task["import_seconds"]]
    else:
        raise ValueError(f"unknown task kind {kind!r}")
    # ru_maxrss is in KiB on Linux.
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def main():
    task = json.loads(sys.argv[1])
    os.environ.setdefault("OMP_NUM_THREADS", str(task["threads"]))
    print(json.dumps(run(task)))


if __name__ == "__main__":
    main()
