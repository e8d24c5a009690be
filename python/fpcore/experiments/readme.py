"""Prints the README block of experiment summaries: python -m fpcore.experiments.readme results/paper/summary.json"""

import sys

from .report import readme_block

if __name__ == "__main__":
    for arg in sys.argv[1:]:
        sys.stdout.write(readme_block(arg))
