"""MkDocs hook: renders the trainer's default configs (python/fpcore/configs/*.yaml) into trainer/config.md.

The page is generated at build time from the files `fpcore-train` loads, so the reference cannot drift from them.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import yaml

MARKER = "<!-- fpcore:config-reference -->"
CONFIG_DIR = Path(__file__).resolve().parents[2] / "python" / "fpcore" / "configs"


def _flatten(tree: dict) -> list[tuple[str, object]]:
    """(section.key, default) rows; values below a key (e.g. backbone_kwargs) stay whole, as one YAML value."""
    rows = []
    for section, values in tree.items():
        if isinstance(values, dict):
            rows.extend((f"{section}.{key}", value) for key, value in values.items())
        else:
            rows.append((section, values))
    return rows


def _comments(text: str) -> str:
    lines = [line[1:].strip() for line in text.splitlines() if line.startswith("#")]
    return " ".join(lines)


def render_config_reference(config_dir: Path = CONFIG_DIR) -> str:
    """Markdown of every default config: its header comment, a key/default table and the file itself."""
    files = sorted(config_dir.glob("*.yaml"))
    if not files:
        raise FileNotFoundError(f"config reference: no *.yaml in {config_dir}")
    parts = []
    for path in files:
        text = path.read_text()
        tree = yaml.safe_load(text)
        if not isinstance(tree, dict):
            raise ValueError(f"config reference: {path} is not a mapping of sections")
        parts.append(f"## `{path.stem}` (`fpcore-train {path.stem}` defaults)\n")
        if header := _comments(text):
            parts.append(html.escape(header, quote=False) + "\n")
        parts.append("| key | default |\n|---|---|")
        for key, value in _flatten(tree):
            shown = json.dumps(value, ensure_ascii=False).replace("|", "\\|")
            parts.append(f"| `{key}` | `{shown}` |")
        parts.append(
            f'\n??? note "{path.name}"\n\n    ```yaml\n' + "".join(f"    {line}\n" for line in text.splitlines())
        )
        parts.append("    ```\n")
    return "\n".join(parts)


def on_page_markdown(markdown: str, page, config, files) -> str:
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, render_config_reference())
