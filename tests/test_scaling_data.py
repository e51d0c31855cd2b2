"""Inputs of the fitter: tables, run directories, verl / TRL logs, selection, bad input."""

import csv
import json

import numpy as np
import pytest

from rlscale.errors import UserError
from rlscale.scaling import load_points, select
from rlscale.scaling.data import from_rows

ROWS = [{"model": m, "N": n, "step": s, "D": 512 * s, "C_flops": 6 * n * 1e4 * s,
         "test_loss": 0.9 - 0.01 * s} for m, n in (("a", 1e8), ("b", 1e9)) for s in range(1, 6)]


def write_csv(path, rows):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


@pytest.mark.parametrize("ext", ["csv", "jsonl", "parquet"])
def test_tables_load_the_same_points(tmp_path, ext):
    p = tmp_path / f"t.{ext}"
    if ext == "csv":
        write_csv(p, ROWS)
    elif ext == "jsonl":
        p.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(ROWS), p)
    pts = load_points(p)  # defaults: x C_flops, y test_loss, size N, step step
    assert len(pts) == 10 and list(pts.sizes) == [1e8, 1e9]
    assert np.allclose(pts.x, [r["C_flops"] for r in ROWS])
    assert len(np.unique(pts.curve)) == 2
    d = load_points(p, x="D")
    assert d.x_name == "D" and d.x.max() == 512 * 5


def test_missing_column_names_file_and_column(tmp_path):
    p = write_csv(tmp_path / "t.csv", ROWS)
    with pytest.raises(UserError, match=r"t\.csv: no column 'C' \(--x"):
        load_points(p, x="C")
    with pytest.raises(UserError, match="--size-col"):
        load_points(p, size_col="params")


def test_bad_value_names_file_line_and_column(tmp_path):
    rows = [dict(r) for r in ROWS]
    rows[3]["C_flops"] = "lots"
    p = write_csv(tmp_path / "t.csv", rows)
    with pytest.raises(UserError, match=r"t\.csv:5: column 'C_flops': not a number"):
        load_points(p)
    with pytest.raises(UserError, match="no such file"):
        load_points(tmp_path / "none.csv")
    (tmp_path / "x.txtx").write_text("a")
    with pytest.raises(UserError, match="unknown table format"):
        load_points(tmp_path / "x.txtx")


def test_rows_without_y_are_eval_free_steps_and_skipped():
    rows = [dict(r) for r in ROWS]
    rows[0]["test_loss"] = None
    assert len(from_rows(rows, "C_flops", "test_loss", source="r")) == 9


def make_run(d, n, steps=6, eval_every=2):
    d.mkdir(parents=True)
    (d / "config.json").write_text(json.dumps({"N": n, "lr": 1e-6}))
    lines = []
    for s in range(0, steps + 1):
        row = {"step": s, "D": 16 * s, "C_paper": 6.0 * n * 1000 * s, "C_itemized": 1.0}
        if s % eval_every == 0:
            row["test_loss"] = 0.9 * (1 + s) ** -0.05
        lines.append(json.dumps(row))
    (d / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    return d


def test_run_directories_single_and_many(tmp_path):
    make_run(tmp_path / "runs" / "r1", 1e6)
    make_run(tmp_path / "runs" / "r2", 4e6)
    one = load_points(tmp_path / "runs" / "r1", x="C_paper")
    assert len(one) == 4 and set(one.size) == {1e6}  # eval steps 0, 2, 4, 6
    many = load_points(tmp_path / "runs", x="C_flops")  # C_flops is C_paper under its CSV name
    assert len(many) == 8 and many.curve_names == ["r1", "r2"] and many.x_name == "C_paper"


def test_run_dir_without_n_is_a_user_error(tmp_path):
    d = make_run(tmp_path / "r", 1e6)
    (d / "config.json").write_text(json.dumps({"lr": 1}))
    with pytest.raises(UserError, match=r"config\.json: field 'N'"):
        load_points(d, x="C_paper")
    (d / "metrics.jsonl").write_text('{"step": 1}\nnot json\n{"step": 2}\n')
    (d / "config.json").write_text(json.dumps({"N": 5}))
    with pytest.raises(UserError, match=r"metrics\.jsonl:2"):
        load_points(d, x="C_paper")


def test_verl_and_trl_inputs_through_the_importers(tmp_path):
    log = tmp_path / "verl.log"
    log.write_text("".join(
        f"step:{s} - perf/total_num_tokens:1000 - val-core/gsm8k/reward/mean@1:{0.1 * s}\n"
        for s in range(1, 5)))
    pts = load_points(log, x="C_paper", n_params=5e8)
    assert len(pts) == 4 and np.all(pts.size == 5e8)
    assert np.allclose(pts.x, 6 * 5e8 * 1000 * np.arange(1, 5))
    assert np.allclose(pts.y, 1 - 0.1 * np.arange(1, 5))
    with pytest.raises(UserError, match="--n-params"):
        load_points(log, x="C_paper")
    tdir = tmp_path / "trl"
    tdir.mkdir()
    hist = [e for s in range(1, 4) for e in ({"step": s, "reward": 0.1, "num_tokens": 500.0 * s},
                                             {"step": s, "eval_reward": 0.2 * s})]
    (tdir / "trainer_state.json").write_text(json.dumps({"log_history": hist}))
    t = load_points(tdir, x="C_paper", n_params=1e6)
    assert len(t) == 3 and np.allclose(t.x, 6e6 * 500 * np.arange(1, 4))


def test_selection_warmup_first_steps_and_sizes(tmp_path):
    pts = load_points(write_csv(tmp_path / "t.csv", ROWS))
    s = select(pts, warmup_clip=1, first_steps=2)
    assert sorted(s.step[s.size == 1e8]) == [2, 3]
    assert set(select(pts, max_size=1e8).size) == {1e8}
    with pytest.raises(UserError, match="no points left"):
        select(pts, max_size=1e7)
    rank = pts.rank_in_curve()
    assert list(rank[pts.size == 1e9]) == [0, 1, 2, 3, 4]
