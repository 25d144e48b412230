"""``attnfaith replicate``: the replication recipe as a subcommand of the one command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from attnfaith.cli import main

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_replication import TINY, planted_rows, write_table  # noqa: E402


def test_replicate_subcommand_end_to_end(tmp_path):
    """``python -m attnfaith replicate`` on a tiny CSV: results.json, report.md, the command it ran."""
    data = write_table(tmp_path / "tiny.csv", planted_rows(120, seed=3), "csv")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "attnfaith", "replicate", "--data", str(data), "--split-column", "exp_split",
           "--out", str(out), "--seeds", "0", "--no-uniform-training", "--limit", "10", *TINY]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads((out / "results.json").read_text())
    assert res["command"].startswith("attnfaith replicate --data ") and "--seeds 0" in res["command"]
    assert res["config"]["layer"] == -1 and res["evaluation"]["studies"][0]["n"] == 10
    assert "Table 2" in (out / "report.md").read_text()


def test_replicate_layer_option(tmp_path):
    """``--layer 0`` is the reference model's only attention layer: the same numbers as the default ``-1``."""
    data = write_table(tmp_path / "tiny.csv", planted_rows(100, seed=4), "csv")
    runs = {}
    for layer in ("-1", "0"):
        out = tmp_path / f"layer{layer}"
        args = ["replicate", "--data", str(data), "--split-column", "exp_split", "--out", str(out), "--seeds", "0",
                "--no-uniform-training", "--limit", "8", "--layer", layer, *TINY]
        assert main(args) == 0
        runs[layer] = json.loads((out / "results.json").read_text())
    assert runs["0"]["config"]["layer"] == 0
    assert runs["-1"]["evaluation"]["table2"] == runs["0"]["evaluation"]["table2"]
    studies = {k: json.loads((tmp_path / f"layer{k}" / "evaluation" / "results.json").read_text()) for k in runs}
    for key in ("permutation", "erasure_attention", "single", "kendall"):
        assert [ex[key] for ex in studies["-1"]["examples"]] == [ex[key] for ex in studies["0"]["examples"]], key


def test_table2_mode_and_a_limit_per_test(tmp_path):
    """``--tests kendall,single --test-limit kendall=all --limit 6``: Table 2 on every test row in its own study
    (only the methods it needs), single-weight erasure on 6 rows (a subset of them), and the report says which n
    each uses."""
    data = write_table(tmp_path / "tiny.csv", planted_rows(120, seed=5), "csv")
    out = tmp_path / "out"
    assert main(["replicate", "--data", str(data), "--split-column", "exp_split", "--out", str(out), "--seeds", "0",
                 "--no-uniform-training", "--limit", "6", "--tests", "kendall,single", "--test-limit", "kendall=all",
                 *TINY]) == 0
    res = json.loads((out / "results.json").read_text())
    first, second = res["evaluation"]["studies"]
    n_test = res["data"]["sizes"]["test"]
    assert (first["folder"], first["tests"], first["n"]) == ("evaluation", ["kendall"], n_test)
    assert (second["folder"], second["tests"], second["n"]) == ("evaluation-single", ["single"], 6)
    assert first["methods"] == ["attention", "gradient", "loo"] and second["methods"] == ["attention"]
    assert set(second["indices"]) <= set(first["indices"])
    kendall = json.loads((out / "evaluation" / "results.json").read_text())
    assert kendall["config"]["evaluators"] == ["kendall"] and all("single" not in ex for ex in kendall["examples"])
    assert res["evaluation"]["table2"]["attention"]["gradient"]["all"]["n"] <= n_test
    report = (out / "report.md").read_text()
    assert f"kendall: {n_test} of {n_test} test examples" in report and f"single: 6 of {n_test}" in report
    assert "command" in res and "--test-limit kendall=all" in res["command"]


def test_replicate_errors_are_one_line(tmp_path, capsys):
    assert main(["replicate", "--data", "x.csv", "--out", str(tmp_path / "o"), "--encoder", "cnn"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("attnfaith: error:") and "--encoder" in err and len(err.splitlines()) == 1
    assert main(["replicate", "--data", str(tmp_path / "missing.csv"), "--out", str(tmp_path / "o"),
                 "--no-progress", "--quiet"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("attnfaith: error:") and "missing.csv" in err and len(err.splitlines()) == 1
    assert main(["replicate", "--data", "x.csv", "--out", str(tmp_path / "o"), "--tests", "kendall,tables",
                 "--no-progress", "--quiet"]) == 1
    err = capsys.readouterr().err.strip()
    assert "--tests" in err and "'tables'" in err and len(err.splitlines()) == 1
    assert main(["replicate", "--data", "x.csv", "--out", str(tmp_path / "o"), "--test-limit", "kendall:5",
                 "--no-progress", "--quiet"]) == 1
    assert "--test-limit must be TEST=N" in capsys.readouterr().err


def test_replicate_is_listed_and_has_help(capsys):
    assert main(["--help"]) == 0
    assert "replicate" in capsys.readouterr().out
    assert main(["replicate", "--help"]) == 0
    assert "--erasure-levels" in capsys.readouterr().out
