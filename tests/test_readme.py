"""The README's experiment tables are the committed results, rendered by fpcore.experiments.report.readme_table."""

import pathlib
import re

import pytest

from fpcore.experiments.report import README_END, readme_block

ROOT = pathlib.Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"<!-- experiment-table: (\S+) -->\n.*?" + re.escape(README_END) + r"\n", re.S)


def test_readme_experiment_tables_match_their_results_files():
    readme = (ROOT / "README.md").read_text()
    blocks = list(BLOCK.finditer(readme))
    assert blocks, "the README shows no experiment table"
    for block in blocks:
        summary = ROOT / block.group(1)
        assert summary.is_file(), f"README cites {block.group(1)}, which does not exist"
        rendered = readme_block(summary).replace(summary.as_posix(), block.group(1))
        assert block.group(0) == rendered, (
            f"README table for {block.group(1)} differs from the results; refresh it with "
            f"`python -m fpcore.experiments.readme {block.group(1)}`"
        )


def test_readme_table_maths():
    from fpcore.experiments import aggregate
    from fpcore.experiments.report import readme_table

    rows = [
        {"task": "a", "target": "y", "arm": arm, "seed": seed, "test_mae": mae}
        for seed, (b, e) in enumerate([(1.0, 0.8), (1.0, 0.79), (1.0, 0.81)])
        for arm, mae in (("baseline", b), ("ead", e))
    ] + [{"task": "b", "target": "z", "arm": "baseline", "seed": 0, "test_mae": 2.0}]
    table = readme_table(aggregate(rows, ["baseline", "ead"], ["a", "b"], "baseline"))
    assert "| a (y) | 1 ± 0 | +20.0* (3/3) |" in table
    assert "| b (z) | 2 ± 0 | — |" in table
    assert table.splitlines()[-1] == "| **average over tasks** | | **+20.0** |"
    with pytest.raises(KeyError):
        readme_table({})
