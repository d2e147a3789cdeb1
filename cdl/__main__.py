"""Command line: ``python -m cdl info``."""
import argparse
import sys


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m cdl", description="cdl utilities")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("info", help="print versions, the build and the BLAS in use")
    args = parser.parse_args(argv)
    if args.command == "info":
        from cdl._info import format_info, info
        print(format_info(info()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
