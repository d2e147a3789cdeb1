"""Benchmarks of cdl against PyTorch, JAX, NumPy, ONNX Runtime and scikit-learn.

Run: python benchmarks/run.py [--quick] [--only cnn,rnn] [--rounds 3] [--threads 2]
(the same as ``python -m cdl bench``; see ``cdl.bench`` for the method).
"""
import sys

from cdl.bench import main

if __name__ == "__main__":
    sys.exit(main())
