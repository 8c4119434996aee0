"""residual-compare on hand-written eval.csv files: the threshold, best, last-k and speed columns, the PNG; its
command line (tyro over Args)."""

import ast
import dataclasses
import inspect
import json
import textwrap
from pathlib import Path

import pytest
from trainer.compare import Args, main, parse_args, run_labels, summarize


def write_run(path, rows):
    path.mkdir()
    lines = ["env_steps,wall_s,successes,episodes,mean_steps,residual_abs"]
    lines += [f"{s},{w},{k},{n},,0.0" for s, w, k, n in rows]
    (path / "eval.csv").write_text("\n".join(lines) + "\n")
    return path


def test_summary_columns(tmp_path):
    run = write_run(tmp_path / "a", [(0, 6.0, 19, 20), (10000, 66.0, 12, 20), (20000, 126.0, 19, 20),
                                     (30000, 186.0, 20, 20), (40000, 246.0, 18, 20)])
    row = summarize(run, threshold=0.95, last=2)
    assert row["first_at_threshold_steps"] == 20000  # the step-0 evaluation (the base alone) does not count
    assert row["first_at_threshold_min"] == 2.1
    assert (row["best"], row["best_steps"]) == ("20/20", 30000)
    assert row["mean_rate_last_2"] == 0.95
    assert row["s_per_10k_steps"] == 60.0
    assert row["algorithm"] == "?"  # no best.json


def test_cli_table_png_json_and_errors(tmp_path, capsys):
    a = write_run(tmp_path / "td3", [(0, 1.0, 5, 20), (10000, 31.0, 10, 20)])
    b = write_run(tmp_path / "sac", [(0, 1.0, 5, 20), (10000, 41.0, 19, 20)])
    out, js = tmp_path / "cmp.png", tmp_path / "cmp.json"
    assert main([str(a), str(b), "--out", str(out), "--json-out", str(js), "--last", "1"]) == 0
    printed = capsys.readouterr().out
    assert "| td3 |" in printed and "| sac |" in printed
    rows = json.loads(js.read_text())
    assert [r["first_at_threshold_steps"] for r in rows] == [None, 10000]
    assert out.stat().st_size > 5000
    assert main([str(tmp_path / "missing")]) == 2
    assert "missing" in capsys.readouterr().err


def field_docstrings(cls) -> dict[str, str]:
    """Field name -> the docstring written under it in the class body."""
    body = ast.parse(textwrap.dedent(inspect.getsource(cls))).body[0].body
    return {a.target.id: b.value.value for a, b in zip(body, body[1:], strict=False)
            if isinstance(a, ast.AnnAssign) and isinstance(b, ast.Expr) and isinstance(b.value, ast.Constant)}


def test_help_lists_every_option_with_its_docstring(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    text = " ".join(capsys.readouterr().out.replace("│", " ").split())
    docs = field_docstrings(Args)
    assert set(docs) == {f.name for f in dataclasses.fields(Args)}, "a field has no docstring"
    for name, doc in docs.items():
        assert " ".join(doc.split()) in text, f"--help lacks the docstring of {name}"
    for option in ("RUN", "--threshold", "--last", "--out", "--title", "--json-out"):  # the argparse parser's
        assert f"{option} " in text, f"--help lacks {option}"


def test_parsed_args_and_bad_values(capsys, monkeypatch):
    def parse(argv):
        return dataclasses.asdict(parse_args(argv))

    assert parse(["a", "b", "--out", "c.png", "--json-out", "c.json", "--last", "1", "--threshold", "0.9",
                  "--title", "T"]) == {"runs": (Path("a"), Path("b")), "threshold": 0.9, "last": 1,
                                      "out": Path("c.png"), "title": "T", "json_out": Path("c.json")}
    assert parse(["a"]) == {"runs": (Path("a"),), "threshold": 0.95, "last": 5, "out": None, "title": "",
                            "json_out": None}
    for argv, option in (([], "RUN"), (["a", "--last", "x"], "--last"), (["a", "--last", "0"], "--last"),
                         (["a", "--threshold", "2"], "--threshold")):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code == 2
        assert option in capsys.readouterr().err


def test_runs_of_the_same_name_in_different_folders_keep_apart(tmp_path):
    """runs/residual/*/dagger: every run is named dagger; the labels (table rows, plot lines) name the parent too."""
    a = tmp_path / "cube_lift" / "dagger"
    b = tmp_path / "pick_place" / "dagger"
    c = tmp_path / "seed0"
    assert run_labels((a, b, c)) == ["cube_lift/dagger", "pick_place/dagger", "seed0"]
