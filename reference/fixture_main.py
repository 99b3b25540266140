"""The command line the PEFT 0.21 fixture scripts share (make_combine_fixture.py,
make_ia3_fixture.py): --fixtures and --skip-version-check, the check of torch,
transformers and peft against the pinned versions (requirements-current.txt),
and a deterministic single-threaded torch before each base's fixture is made."""

import argparse
import sys

import peft
import torch
import transformers

PINNED = {"torch": "2.15.0", "transformers": "5.24.0", "peft": "0.21.2"}


def run(description: str, bases, make_base) -> int:
    """Calls make_base(fixtures_dir, base, versions) for each base; returns the exit code."""
    ap = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fixtures", default="tests/fixtures")
    ap.add_argument("--skip-version-check", action="store_true",
                    help="run even if torch/transformers/peft differ from the pinned versions")
    args = ap.parse_args()
    got = {"torch": torch.__version__.split("+")[0], "transformers": transformers.__version__, "peft": peft.__version__}
    if got != PINNED and not args.skip_version_check:
        print(f"error: versions {got} differ from the pinned {PINNED} (pass --skip-version-check to go on)",
              file=sys.stderr)
        return 1
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    for base in bases:
        make_base(args.fixtures, base, got)
    return 0
