"""Run by torchrun in test_distributed.py: pretrain then train with the CLI under DDP (gloo)."""

import sys

from fpcore.cli import main

sys.path.insert(0, sys.argv[1])
from tests.training.toy_descriptor import register  # noqa: E402

register()
out, data = sys.argv[2], sys.argv[3]
sys.exit(main(sys.argv[4:]))
