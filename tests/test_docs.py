"""The documentation's configuration reference is generated from the trainer's default configs."""

import importlib.util
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
HOOK = ROOT / "docs" / "hooks" / "config_reference.py"
CONFIGS = ROOT / "python" / "fpcore" / "configs"


def _hook():
    spec = importlib.util.spec_from_file_location("config_reference", HOOK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_config_reference_lists_every_default_key_with_its_value():
    hook = _hook()
    text = hook.render_config_reference(CONFIGS)
    for path in sorted(CONFIGS.glob("*.yaml")):
        assert f"## `{path.stem}`" in text
        for section, values in yaml.safe_load(path.read_text()).items():
            for key in values:
                assert f"| `{section}.{key}` |" in text, f"{path.name}: {section}.{key} missing from the reference"


def test_config_reference_renders_a_given_folder_and_refuses_an_empty_one(tmp_path):
    hook = _hook()
    (tmp_path / "demo.yaml").write_text("# demo defaults\noptim:\n  lr: 0.5\n")
    text = hook.render_config_reference(tmp_path)
    assert "| `optim.lr` | `0.5` |" in text and "demo defaults" in text
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="no \\*.yaml"):
        hook.render_config_reference(empty)


def test_hook_leaves_pages_without_the_marker_alone():
    hook = _hook()
    assert hook.on_page_markdown("no marker here", None, None, None) == "no marker here"
    assert hook.MARKER not in hook.on_page_markdown(f"intro\n\n{hook.MARKER}\n", None, None, None)
