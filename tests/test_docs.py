"""The documentation that is generated from the code is current."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_api_md_is_generated_from_the_current_docstrings():
    done = subprocess.run([sys.executable, str(ROOT / "docs" / "gen_api.py"), "--check"], capture_output=True,
                          text=True, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr + "\n(run: python docs/gen_api.py)"


def test_readme_python_blocks_run_as_written(tmp_path, monkeypatch):
    """Every ```python block of the README runs, in order, as a user would paste it (outputs go to a scratch folder)."""
    import re

    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert len(blocks) >= 2
    monkeypatch.chdir(tmp_path)
    for i, block in enumerate(blocks):
        exec(compile(block, f"README.md python block {i + 1}", "exec"), {"__name__": "__readme__"})
    assert (tmp_path / "runs" / "my-model" / "results.json").is_file()
