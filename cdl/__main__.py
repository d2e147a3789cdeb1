"""Command line: ``python -m cdl info``, ``demo`` and ``bench``."""
import argparse
import sys


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m cdl", description="cdl utilities")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("info", help="print versions, the build and the BLAS in use")
    demo = commands.add_parser(
        "demo", help="train a digit classifier, save it, reload it and check it")
    demo.add_argument("--out", default="cdl-demo", help="folder for the model and curves")
    demo.add_argument("--epochs", type=int, default=30)
    demo.add_argument("--seed", type=int, default=0)
    commands.add_parser("bench", help="benchmark cdl against PyTorch and NumPy "
                        "(options: python -m cdl bench --help)", add_help=False)
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["bench"]:
        from cdl.bench import main as bench_main
        return bench_main(argv[1:])
    args = parser.parse_args(argv)
    if args.command == "info":
        from cdl._info import format_info, info
        print(format_info(info()))
    elif args.command == "demo":
        from cdl.demo import run
        result = run(args.out, epochs=args.epochs, seed=args.seed)
        if not result["identical"]:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
