"""Read per-step metrics of runs made by other engines (verl, TRL) into rlscale's row format.

Every reader returns rows {step, D, tokens, C_paper, test_loss, reward_mean, ...} with
    tokens   cumulative tokens processed (prompts + completions of every rollout),
    C_paper  6 * N * tokens (the paper's convention; N = non-embedding parameters, given),
    D        prompts consumed = step * B (when the prompt batch size B is known),
    test_loss 1 - validation score, on the steps that ran a validation.

verl (`trainer.logger` console or file), in the shapes verl 0.9 writes them:
    console (verl.utils.logger.aggregate_logger.concat_dict_to_str): `step:12 - key:value - ...`
      with each value printed by pprint.pformat, so under numpy >= 2 a numpy scalar reads
      `np.float64(0.41)`; Ray prefixes lines with `(TaskRunner pid=..)`.
    file (verl.utils.tracking.FileLogger, at VERL_FILE_LOGGER_PATH): one
      `orjson.dumps({"step": 12, "data": {...}}) + b"\n"` per log call, written unbuffered in one
      write, so only a killed writer's last line can be torn, and then it lacks its newline
      (read as a torn tail); any other bad line is an error naming file and line. NaN is
      written as null. The file is opened "wb" (truncated) by every launch: `rlscale
      export-verl` gives each launch its own file, and the reader takes several files or a
      directory of them, in name order, a later launch's step replacing an earlier one's.
    Flat objects with a `step` or `training/global_step` key are read too.
  Validation score: `val-core/<data_source>/<reward|acc>/mean@<n>` (current verl), else
  `val/test_score/<data_source>` (older verl), averaged over data sources. Tokens per step:
  `perf/total_num_tokens`, else (prompt_length/mean + response_length/mean) * B * n.
TRL 1.x: `trainer_state.json` `log_history` (transformers Trainer.log appends `{**logs, "step"}`;
  GRPOTrainer.log adds its averaged metrics): training entries carry `num_tokens` (the running
  total `state.num_input_tokens_seen`) and `reward`; evaluation entries carry the same metrics
  prefixed `eval_` (`eval_reward`, `eval_num_tokens`: the training tokens seen so far), often at
  steps with no training entry (eval_steps need not be a multiple of logging_steps).

CLI: `rlscale import verl LOG_OR_DIR... --n-params N [--batch-size B] [--rollout-n n] --db DB`,
     `rlscale import trl DIR --n-params N [--batch-size B] --db DB`,
     `rlscale import run RUN_DIR... --db DB` (rlscale run directories).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from rlscale.errors import UserError
from rlscale.files import parse_json, read_json
from rlscale.finite import finite_float
from rlscale.flops import c_paper

_STEP_RE = re.compile(r"(?:^|\s|\])step:(\d+)\s+-\s+(.*)$")
_NUMBER = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$|^[-+]?(nan|inf)$", re.I)
_NUMPY_REPR = re.compile(r"^np\.(?:float|int|uint)(?:16|32|64|128)?\((.*)\)$")  # numpy >= 2 repr
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_VAL_CORE = re.compile(r"^val-core/(.+)/(reward|acc)/mean@(\d+)$")
_VAL_OLD = re.compile(r"^val/test_score/(.+)$")


def _parse_console_fields(text: str, where: str) -> dict[str, float]:
    out = {}
    for field in text.split(" - "):
        field = field.strip()
        if not field:
            continue
        key, sep, value = field.rpartition(":")
        value = value.strip()
        if sep and value in ("True", "False"):
            continue  # verl prints bools (numbers.Number) too; they are flags, not metrics
        m = _NUMPY_REPR.match(value)
        if m:
            value = m.group(1).strip()
        if not sep or not key or not _NUMBER.match(value):
            raise UserError(f"{where}: cannot read metric {field[:60]!r} (expected key:number)")
        out[key.strip()] = float(value)
    return out


def read_verl_log(path: str | Path) -> list[dict[str, Any]]:
    """Raw per-step metric dicts of one verl log (console text or JSONL), merged by step."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    by_step: dict[int, dict] = {}
    text = path.read_text(encoding="utf-8", errors="replace")
    lines = text.splitlines()
    for i, raw in enumerate(lines, 1):
        line = _ANSI.sub("", raw).strip()
        where = f"{path}:{i}"
        if line.startswith("{"):
            try:
                obj = parse_json(line, where)
            except UserError:
                if i == len(lines) and not text.endswith("\n"):
                    continue  # torn last line of a killed writer (it never got its newline)
                raise
            step, data = _json_step(obj, where)
        else:
            m = _STEP_RE.search(line)
            if not m:
                continue  # other console output (Ray, vLLM, warnings)
            step, data = int(m.group(1)), _parse_console_fields(m.group(2), where)
        by_step.setdefault(step, {}).update(data)
    if not by_step:
        raise UserError(f"{path}: no verl metric lines (`step:N - key:value` or JSON) found")
    return [{"step": s, **by_step[s]} for s in sorted(by_step)]


def read_verl_logs(paths: list[str | Path]) -> list[dict[str, Any]]:
    """Raw step metrics of a run logged over several launches: files in the order given, a
    directory as its *.jsonl files in name order (export-verl names them by launch time). A
    step logged again by a later launch (resumed from a checkpoint before it) is replaced."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(p.glob("*.jsonl"))
            if not found:
                raise UserError(f"{p}: no verl metrics files (*.jsonl) in this directory")
            files += found
        else:
            files.append(p)
    by_step: dict[int, dict] = {}
    for f in files:
        for m in read_verl_log(f):
            by_step[m["step"]] = m
    return [by_step[s] for s in sorted(by_step)]


def _json_step(obj: Any, where: str) -> tuple[int, dict]:
    if not isinstance(obj, dict):
        raise UserError(f"{where}: expected a JSON object")
    data = obj.get("data", obj)
    if not isinstance(data, dict):
        raise UserError(f"{where}: field 'data' is not an object")
    step = obj.get("step", data.get("training/global_step"))
    if not isinstance(step, (int, float)) or isinstance(step, bool):
        raise UserError(f"{where}: no numeric 'step' field")
    return int(step), {k: x for k, v in data.items()
                       if k != "step" and (x := finite_float(v)) is not None}


def verl_val_score(metrics: dict) -> float | None:
    """Mean validation score over data sources; None when the step ran no validation."""
    core: dict[str, tuple[int, float]] = {}
    for k, v in metrics.items():
        m = _VAL_CORE.match(k)
        if m and _finite(v):
            src, n = m.group(1), int(m.group(3))
            if src not in core or n > core[src][0]:  # mean@n with the largest n is verl's core
                core[src] = (n, float(v))
    vals = [v for _, v in core.values()]
    if not vals:
        vals = [float(v) for k, v in metrics.items() if _VAL_OLD.match(k) and _finite(v)]
    return sum(vals) / len(vals) if vals else None


def _finite(v: Any) -> bool:
    return finite_float(v) is not None


def engine_row(step: int, tokens: float, n_params: float, batch_size: int | None,
               score: float | None, reward: Any, response_length: Any) -> dict:
    """One imported step in rlscale's row format; C_paper by rlscale.flops (6 N T)."""
    return {"step": step, "D": step * batch_size if batch_size else None, "tokens": tokens,
            "C_paper": c_paper(n_params, tokens),
            "test_loss": None if score is None else 1.0 - score, "val_score": score,
            "reward_mean": finite_float(reward), "response_length": finite_float(response_length)}


def verl_rows(raw: list[dict], n_params: float, batch_size: int | None = None,
              rollout_n: int | None = None, where: str = "verl log") -> list[dict]:
    """rlscale rows from raw verl step metrics: cumulative tokens, C_paper, D, test_loss."""
    rows, tokens = [], 0.0
    for m in raw:
        step = m["step"]
        t = m.get("perf/total_num_tokens")
        if not _finite(t):
            p, r = m.get("prompt_length/mean"), m.get("response_length/mean")
            t = (p + r) * batch_size * rollout_n if _finite(p) and _finite(r) and batch_size \
                and rollout_n else None
        if t is None and step > 0 and _is_train_step(m):
            raise UserError(f"{where}: step {step}: no token count (perf/total_num_tokens); "
                            "give --batch-size and --rollout-n to use prompt/response lengths")
        tokens += t or 0.0
        reward = m.get("critic/score/mean", m.get("critic/rewards/mean"))
        rows.append(engine_row(step, tokens, n_params, batch_size, verl_val_score(m), reward,
                               m.get("response_length/mean")))
    return rows


def _is_train_step(m: dict) -> bool:
    return any(k.startswith(("actor/", "critic/", "response_length/")) for k in m)


def read_trl_run(path: str | Path, n_params: float, batch_size: int | None = None,
                 eval_key: str = "eval_reward") -> list[dict]:
    """rlscale rows from a TRL output / checkpoint dir (trainer_state.json log_history)."""
    path = Path(path)
    state_path = path / "trainer_state.json" if path.is_dir() else path
    if path.is_dir() and not state_path.is_file():  # an output dir: take its last checkpoint
        ckpts = sorted(path.glob("checkpoint-*/trainer_state.json"),
                       key=lambda p: int(p.parent.name.split("-")[-1]) if
                       p.parent.name.split("-")[-1].isdigit() else -1)
        if not ckpts:
            raise UserError(f"{path}: no trainer_state.json (nor checkpoint-*/trainer_state.json)")
        state_path = ckpts[-1]
    state = read_json(state_path)
    history = state.get("log_history") if isinstance(state, dict) else None
    if not isinstance(history, list):
        raise UserError(f"{state_path}: no 'log_history' list")
    by_step: dict[int, dict] = {}
    for i, e in enumerate(history):
        if not isinstance(e, dict) or not isinstance(e.get("step"), int):
            raise UserError(f"{state_path}: log_history[{i}]: entry without an integer 'step'")
        by_step.setdefault(e["step"], {}).update(e)
    rows, tokens = [], 0.0
    eval_tokens = f"{eval_key.split('_', 1)[0]}_num_tokens" if "_" in eval_key else None
    for step in sorted(by_step):
        e = by_step[step]
        if _finite(e.get("num_tokens")):
            tokens = float(e["num_tokens"])  # TRL logs the running total
        elif eval_tokens and _finite(e.get(eval_tokens)):
            tokens = float(e[eval_tokens])  # an eval-only step: the training tokens seen so far
        elif "reward" in e:
            raise UserError(f"{state_path}: step {step}: training entry without 'num_tokens'")
        elif eval_key in e:
            raise UserError(f"{state_path}: step {step}: eval entry without '{eval_tokens}' "
                            "(nor a training entry's 'num_tokens')")
        if not any(k in e for k in ("reward", eval_key)):
            continue  # e.g. the final train_runtime summary
        score = finite_float(e.get(eval_key))
        rows.append(engine_row(step, tokens, n_params, batch_size, score, e.get("reward"),
                               e.get("completions/mean_length")))
    if not rows:
        raise UserError(f"{state_path}: log_history has no training or eval entries")
    return rows


# -- CLI ----------------------------------------------------------------------------------------
def configure(parser) -> None:
    from rlscale.store import add_db_flag

    sub = parser.add_subparsers(dest="engine", metavar="ENGINE", required=True)
    v = sub.add_parser("verl", help="verl console logs or JSONL metrics files (one per launch), "
                       "or a directory of them")
    v.add_argument("log", metavar="LOG", nargs="+")
    v.add_argument("--rollout-n", type=int, help="rollouts per prompt (if the log lacks tokens)")
    t = sub.add_parser("trl", help="a TRL output dir or checkpoint (trainer_state.json)")
    t.add_argument("log", metavar="DIR")
    t.add_argument("--eval-key", default="eval_reward",
                   help="log_history key of the validation score (test_loss = 1 - it)")
    for p in (v, t):
        p.add_argument("--n-params", type=float, help="non-embedding parameters N (for C=6NT)")
        p.add_argument("--config", help="JSON with N (and the run's settings) instead of flags")
        p.add_argument("--batch-size", type=int, help="prompts per step B (D = step * B)")
        p.add_argument("--name", help="run label stored in the config (default: the path)")
    r = sub.add_parser("run", help="rlscale run directories (config.json + metrics.jsonl)")
    r.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    for p in (v, t, r):
        add_db_flag(p)


def run(args) -> int:
    from rlscale.rundir import read_run
    from rlscale.store import Store, check_db, config_hash, default_db, import_run_dir

    # every input is read and checked before the database is opened: a failed import writes
    # nothing, and a --db that is not an rlscale database is refused untouched
    db = check_db(args.db or default_db(), create=True)
    if args.engine == "run":
        for d in args.run_dirs:
            read_run(d, need_metrics=False)
        with Store(db) as store:
            for d in args.run_dirs:
                print(f"{import_run_dir(store, d)}  {d}")
        return 0
    config = read_json(args.config) if args.config else {}
    if not isinstance(config, dict):
        raise UserError(f"--config: {args.config}: expected a JSON object")
    config = dict(config)
    n = args.n_params if args.n_params is not None else config.get("N")
    if not _finite(n) or n <= 0:
        raise UserError("--n-params: give the non-embedding parameter count N (> 0), "
                        "or a --config JSON with a positive 'N'")
    B = _positive_int("--batch-size", args.batch_size, config.get("batch_size"))
    logs = args.log if args.engine == "verl" else [args.log]
    if args.engine == "verl":
        n_roll = _positive_int("--rollout-n", args.rollout_n, config.get("group_size"))
        rows = verl_rows(read_verl_logs(logs), n, B, n_roll, where=" ".join(logs))
    else:
        rows = read_trl_run(args.log, n, B, args.eval_key)
    config.update({"N": n, "batch_size": B, "name": args.name or ", ".join(logs),
                   "imported_from": ", ".join(str(Path(p).resolve()) for p in logs)})
    config = {k: v for k, v in config.items() if v is not None}
    with Store(db) as store:
        # the id hashes the source file too: two logs of one config are two runs
        run_id = store.add_run(config, run_id=config_hash({**config, "engine": args.engine}),
                               N=n, source=args.engine, status="done")
        store.add_metrics(run_id, rows)
    evals = sum(r["test_loss"] is not None for r in rows)
    print(f"{run_id}: {len(rows)} steps ({evals} with test_loss) from {', '.join(logs)} "
          f"into {db}")
    return 0


def _positive_int(flag: str, given, from_config) -> int | None:
    """The flag's value, else the --config JSON's; None if neither; UserError unless >= 1."""
    v = given if given is not None else from_config
    if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
        raise UserError(f"{flag}: {v!r}: must be a whole number >= 1")
    return v
