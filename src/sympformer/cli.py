"""The `sympformer` command: each subcommand is one plain function in `COMMANDS` (jsonargparse
builds its flags from the signature and docstring), so the same functions are callable from Python.

    sympformer train [--preset quick|paper-v1|smoke] [--config FILE] [--arch A --scheme S ...]
    sympformer sample --ckpt RUN_OR_CHECKPOINT --prompt TEXT [--max-new-tokens N ...]
    sympformer flow [--problem linear,softmax,sphere,control] [--kappa 10,100] [--seeds 8] --out DIR
    sympformer audit [--archs a,b] [--schemes a,b] [--dtype float32|float64|bfloat16]
    sympformer compare --runs a,b:scheme[/learned] [--seeds 3] [--preset P] [--jobs 2] --out DIR

Adding a subcommand: write a function with type hints and a docstring, add it to `COMMANDS` and,
if it wants short flags, a table to `ALIASES`. Flags may use "-" or "_" (`--max-new-tokens`).

Precedence for `train`: preset < config files (in order) < explicit flags, whatever their order
on the command line: `expand_args` puts the preset (or, with --resume, the run's config.json) and
the --config files first. Bad input of any kind (flags, values, data, folders, checkpoints) ends
with one line "error: ..." on stderr and exit code 2; a bug still shows its traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml
from jsonargparse import auto_cli, set_parsing_settings

from sympformer.data import DataConfig
from sympformer.model import ModelConfig
from sympformer.train import (
    DEFAULT_PRESET,
    DivergenceError,
    ExperimentConfig,
    TrainConfig,
    fit,
    generate_text,
    load_for_sampling,
    preset_dict,
)
from sympformer.train.loop import CONFIG_JSON
from sympformer.train.loop import USER_ERRORS as RUN_INPUT_ERRORS

EXIT_USER_ERROR = 2


def train(
    model: ModelConfig = ModelConfig(),  # noqa: B008 (jsonargparse reads defaults from the signature)
    data: DataConfig = DataConfig(),  # noqa: B008
    train: TrainConfig = TrainConfig(),  # noqa: B008
    preset: str = DEFAULT_PRESET,
    out: Path | None = None,
    resume: Path | None = None,
) -> None:
    """Train a language model into a run folder: config.json, run.json, metrics.csv, checkpoints
    (latest, best), loss.png and samples.txt; prints the final validation loss and the unigram
    entropy of the validation tokens.

    Short flags: --arch, --scheme (model), --data PATH, --dataset, --tokenizer (data),
    --max-steps, --seed, --device, --dtype {float32,bfloat16}, --compile (train). Precedence:
    preset < --config files < flags. Under torchrun (`torchrun --nproc_per_node N -m
    sympformer.cli train ...`) each process trains a shard; rank 0 writes the files.

    Args:
        preset: Starting values: quick (default; a few minutes on a CPU), paper-v1 (SPEC §9.1),
            smoke (seconds; tests).
        out: Run folder; default runs/<arch>-<scheme>-<time>. Refused if it holds a run.
        resume: Run folder to continue from its latest checkpoint (its config.json is the base
            config; only a few fields, e.g. train.max_steps or train.device, may change).
    """
    preset_dict(preset)  # an unknown name fails here, listing the presets
    fit(
        ExperimentConfig(model=model, data=data, train=train, preset=preset), out=out, resume=resume
    )


def sample(
    ckpt: Path,
    prompt: str,
    max_new_tokens: int = 200,
    temperature: float = 0.8,
    top_k: int | None = 50,
    seed: int = 1337,
    which: str = "best",
    device: str = "cpu",
) -> None:
    """Continue a prompt with a trained model (KV-cached decoding) and print the text.

    Args:
        ckpt: A run folder (its `which` checkpoint, else the other) or a checkpoint folder.
        prompt: Text to continue (UTF-8, at most the model's context in tokens).
        max_new_tokens: Tokens to generate.
        temperature: Sampling temperature; 0 is greedy decoding.
        top_k: Sample among the k most likely tokens; null: all.
        seed: Seed of the sampler (same seed, same text).
        which: best or latest.
        device: cpu, cuda, ...
    """
    model, tokenizer = load_for_sampling(ckpt, which, device)
    print(generate_text(model, tokenizer, prompt, max_new_tokens, temperature, top_k, seed))


def _names(text: str | None) -> list[str] | None:
    """A comma-separated list ("gpt,symp") as names; None stays None (all)."""
    if text is None:
        return None
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise ValueError(f"empty list {text!r}: give comma-separated names")
    return names


def _values(text: str, convert: Callable[[str], Any], flag: str) -> tuple:
    """A comma-separated flag value ("10,100,1000") as a tuple of ``convert``-ed items."""
    items = [v.strip() for v in str(text).split(",") if v.strip()]
    if not items:
        raise ValueError(f"--{flag}: empty list {text!r}: give comma-separated values")
    try:
        return tuple(convert(v) for v in items)
    except ValueError:
        raise ValueError(f"--{flag}: {text!r} is not a comma-separated list of numbers") from None


def flow(
    problem: str = "linear",
    kappa: str = "100",
    c_log: str = "3",
    c_lin: float = 0.0,
    eps: str = "0.2",
    seeds: str = "8",
    calls: int | None = None,
    schemes: str | None = None,
    jobs: int = 1,
    out: Path = Path("runs/flow-study"),
) -> None:
    """Run a flow study: accelerated schemes vs the classical flow over seeds (SPEC §5.1).

    Every instance (problem, kappa, c_log, eps, seed) runs the classical flow and each scheme,
    each method with its best step from one grid per metric (gap after K oracle calls; calls to
    relative 1e-2, 1e-4, 1e-6). Writes OUT/instances.csv, curves.csv, summary.md, summary.json,
    ratio_vs_kappa.png and gap_vs_calls.png, and prints summary.md. Lists are comma-separated
    (--kappa 10,100,1000).

    Args:
        problem: linear (Stein flow), softmax (mobility B/z, convex potential), sphere (attention
            energy on the sphere), control (the authors' positive control, kappa = 100); a list
            runs each.
        kappa: Condition numbers >= 1 (linear, softmax).
        c_log: Damping c_log >= 0 (linear, softmax, sphere; the control has its own heavy-ball
            damping, alpha = 0.2).
        c_lin: Constant friction c_lin >= 0 (linear, softmax, sphere).
        eps: Kernel strengths of the control, A = eps I.
        seeds: A count n (seeds 0..n-1) or a list of seeds ("0,3,5"; one seed s: "s,").
        calls: Budget K of oracle calls, at most 10000 (default 400 linear, 300 softmax and
            control, 100 sphere).
        schemes: Comma-separated integrators (default: all of SCHEMES).
        jobs: Processes that run instances side by side.
        out: Output folder.
    """
    from sympformer.compare.flow import FlowStudyConfig
    from sympformer.compare.flow_report import SUMMARY_MD
    from sympformer.compare.flow_study import run_study
    from sympformer.dynamics import SCHEMES

    seed_list = _values(seeds, int, "seeds")
    cfg = FlowStudyConfig(
        problems=_values(problem, str, "problem"),
        kappa=_values(kappa, float, "kappa"),
        c_log=_values(c_log, float, "c-log"),
        c_lin=c_lin,
        eps=_values(eps, float, "eps"),
        seeds=seed_list[0] if len(seed_list) == 1 and "," not in str(seeds) else seed_list,
        calls=calls,
        schemes=tuple(_names(schemes) or SCHEMES),
    )
    run_study(cfg, out, jobs=jobs)
    print((out / SUMMARY_MD).read_text(), end="")


def audit(
    archs: str | None = None,
    schemes: str | None = None,
    dtype: str = "float32",
    train_steps: int = 5,
) -> None:
    """Check every arch x scheme: future-token leakage, cached decoding = full forward, finite
    loss and gradients at init and after a few training steps, parameter counts. Prints a table;
    exits with code 1 if any check fails.

    Args:
        archs: Comma-separated archs (default: all).
        schemes: Comma-separated schemes of the accelerated archs (default: all).
        dtype: float32, float64 or bfloat16 (autocast).
        train_steps: AdamW steps on random tokens before the second finiteness check.
    """
    from sympformer.compare.audit import DTYPES, audit_configs, audit_one, format_table

    if dtype not in DTYPES:
        raise ValueError(f"audit: dtype={dtype!r} is not one of {list(DTYPES)}")
    if train_steps < 0:
        raise ValueError(f"audit: train_steps={train_steps} must be >= 0")
    rows = []
    for cfg in audit_configs(_names(archs), _names(schemes)):
        rows.append(audit_one(cfg, dtype, train_steps))
        print(f"  {rows[-1].model}: {'ok' if rows[-1].ok else 'FAIL'}", file=sys.stderr)
    print(format_table(rows))
    if not all(r.ok for r in rows):
        sys.exit(1)


def compare(
    runs: str,
    out: Path,
    seeds: int = 3,
    preset: str = "compare-cpu",
    dataset: str | None = None,
    data_path: str | None = None,
    tokenizer: str | None = None,
    cache_dir: str | None = None,
    max_steps: int | None = None,
    seed: int | None = None,
    jobs: int = 1,
    threads: int | None = None,
    matched_gpt: bool = True,
    wallclock_matched: bool = False,
) -> None:
    """Train model variants x seeds on identical data and budget; write Table 1 and Figure 2.

    Every --runs variant trains with --seeds seeds (seed k of every model: the same initial
    weights seed and batches) on the same data, budget and validation batches, each into
    OUT/runs/<label>-seed<k>/; then OUT/results.md, results.tex (Table 1: mean ± sd over seeds,
    paired t-tests against gpt), curves.png (Figure 2) and summary.json are written. Repeating
    the command continues an interrupted comparison (finished runs are skipped, interrupted ones
    resumed) and regenerates the report; it may add rows to OUT's comparison (new rows pair with
    the seeds already trained), any other change is refused. The committed
    CPU comparison (about 55 min on 2 idle cores): --runs
    gpt,yurii,symp:presymp_euler,symp_linear:presymp_euler --seeds 3 --preset compare-cpu
    --jobs 2.

    Args:
        runs: Comma-separated variants, "arch" or "arch:scheme", each optionally followed by
            "/learned" or "/zero" (velocity initialisation; default: the arch's own), e.g.
            gpt,yurii,symp:presymp_euler,symp:presymp_euler/learned (gpt is always included).
        out: Comparison folder.
        seeds: Seeds per variant.
        preset: Base settings of every run: compare-cpu (default; the committed CPU comparison),
            quick, paper-v1, smoke.
        dataset: Override the preset's data.dataset.
        data_path: Local text file or folder (dataset text); short flag --data.
        tokenizer: Override the preset's data.tokenizer (bpe, gpt2, bytes).
        cache_dir: Token cache root (default $SYMPFORMER_CACHE or ~/.cache/sympformer).
        max_steps: Override the preset's train.max_steps (the budget of every row).
        seed: First seed (default: the preset's train.seed); seed k is seed + k.
        jobs: Runs trained side by side in separate processes.
        threads: Torch threads per run (default: CPU cores // jobs). At a fixed thread count
            the per-run metrics do not depend on --jobs.
        matched_gpt: Add gpt-matched, a GPT with the parameter count of the largest variant
            (within 2 %); --no-matched-gpt leaves it out.
        wallclock_matched: Add gpt-wallclock, a GPT trained for more steps so that its
            wall-clock matches the slowest row's mean (--wallclock-matched true).
    """
    from sympformer.compare.runner import CompareConfig, run_comparison
    from sympformer.train import preset_config

    given = (("dataset", dataset), ("path", data_path), ("tokenizer", tokenizer),
             ("cache_dir", cache_dir))  # fmt: skip
    data = {k: v for k, v in given if v is not None}
    train = {k: v for k, v in (("max_steps", max_steps), ("seed", seed)) if v is not None}
    base = preset_config(preset, data=data, train=train)
    cfg = CompareConfig(_names(runs), seeds, base, matched_gpt, wallclock_matched)
    summary = run_comparison(cfg, out, jobs=jobs, threads=threads, command=" ".join(sys.argv))
    print((out / summary["files"][0]).read_text(), end="")


COMMANDS: dict[str, Callable[..., Any]] = {
    "train": train,
    "sample": sample,
    "flow": flow,
    "audit": audit,
    "compare": compare,
}
"""Subcommand name -> function; jsonargparse derives the flags from the signature."""

ALIASES: dict[str, dict[str, str]] = {
    "train": {
        "--arch": "--model.arch",
        "--scheme": "--model.scheme",
        "--data": "--data.path",
        "--dataset": "--data.dataset",
        "--tokenizer": "--data.tokenizer",
        "--max_steps": "--train.max_steps",
        "--seed": "--train.seed",
        "--device": "--train.device",
        "--dtype": "--train.dtype",
        "--compile": "--train.compile",
    },
    "compare": {
        "--data": "--data_path",
        # a "--no-" flag never takes a value, so it may stand for the flag with its value
        "--no_matched_gpt": "--matched_gpt=false",
        "--no_wallclock_matched": "--wallclock_matched=false",
    },
}
"""Per subcommand: short flag -> the nested flag it stands for (after "-" -> "_")."""

SWITCHES: dict[str, set[str]] = {
    "train": {"--train.compile"},
    "compare": {"--matched_gpt", "--wallclock_matched"},
}
"""Boolean flags that may be given without a value (`--compile` means `--train.compile true`)."""

BOOL_WORDS = {"true", "false", "yes", "no", "1", "0", "on", "off"}

USER_ERRORS: tuple[type[BaseException], ...] = (
    *RUN_INPUT_ERRORS,  # ValueError (DataError, CheckpointError, RunError, config checks), OSError
    argparse.ArgumentError,  # unknown flags, unparsable values
    DivergenceError,
)


def normalize_flags(command: str, args: Sequence[str]) -> list[str]:
    """Flag names with "_" for "-" and aliases resolved ("--max-steps=5" becomes
    "--train.max_steps=5"); a bare switch gets the value "true"."""
    aliases, switches = ALIASES.get(command, {}), SWITCHES.get(command, set())
    out: list[str] = []
    for i, arg in enumerate(args):
        if not arg.startswith("--") or arg == "--":
            out.append(arg)
            continue
        name, eq, value = arg.partition("=")
        name = "--" + name[2:].replace("-", "_")
        name = aliases.get(name, name)
        if name in switches and not eq:
            following = args[i + 1] if i + 1 < len(args) else ""
            if following.lower() not in BOOL_WORDS:
                out += [name, "true"]
                continue
        out.append(name + eq + value)
    return out


def _flag_values(args: list[str], flag: str) -> tuple[list[str], list[str]]:
    """(values of every `flag V` / `flag=V`, the other arguments)."""
    values, rest, i = [], [], 0
    while i < len(args):
        if args[i] == flag:
            if i + 1 >= len(args):
                raise ValueError(f"{flag} needs a value")
            values.append(args[i + 1])
            i += 2
        elif args[i].startswith(flag + "="):
            values.append(args[i].split("=", 1)[1])
            i += 1
        else:
            rest.append(args[i])
            i += 1
    return values, rest


def _preset_in(config: str) -> str | None:
    """The top-level `preset` of a config file (or inline YAML/JSON string), if any."""
    path = Path(config)
    try:
        text = path.read_text() if path.is_file() else config
        data = yaml.safe_load(text)
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return None  # jsonargparse reports the problem
    return data.get("preset") if isinstance(data, dict) else None


def expand_train_args(args: list[str]) -> list[str]:
    """Order `train` arguments as base config, --config files, flags (see module docstring)."""
    configs, rest = _flag_values(args, "--config")
    presets, _ = _flag_values(rest, "--preset")
    resumes, _ = _flag_values(rest, "--resume")
    if resumes and Path(resumes[-1], CONFIG_JSON).is_file():
        if presets:
            raise ValueError(
                "--preset cannot be combined with --resume: the run's config.json is the base"
            )
        base = str(Path(resumes[-1], CONFIG_JSON))
    else:
        named = [p for p in map(_preset_in, configs) if p]  # the last file naming one wins
        name = presets[-1] if presets else (named[-1] if named else DEFAULT_PRESET)
        base = json.dumps(preset_dict(name))
    head = ["--config", base]
    for config in configs:
        head += ["--config", config]
    return head + rest


def expand_args(args: Sequence[str]) -> list[str]:
    """The command line as jsonargparse should see it: flags normalised, aliases resolved, and
    for `train` the preset and config files first."""
    args = list(args)
    i = next((k for k, a in enumerate(args) if not a.startswith("-")), None)
    if i is None or args[i] not in COMMANDS:
        return args
    command = args[i]
    tail = normalize_flags(command, args[i + 1 :])
    if command == "train" and not {"-h", "--help"} & set(tail):
        tail = expand_train_args(tail)
    return [*args[:i], command, *tail]


def one_line(err: BaseException) -> str:
    text = " ".join(line.strip() for line in str(err).splitlines() if line.strip())
    return text or type(err).__name__


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the `sympformer` console script."""
    args = sys.argv[1:] if argv is None else list(argv)
    set_parsing_settings(docstring_parse_attribute_docstrings=True)  # field docs in --help
    try:
        auto_cli(COMMANDS, args=expand_args(args), as_positional=False, exit_on_error=False)
    except USER_ERRORS as err:
        print(f"error: {one_line(err)}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)


if __name__ == "__main__":
    main()
