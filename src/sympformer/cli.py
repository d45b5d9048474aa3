"""The `sympformer` command. Each subcommand is a config dataclass and a plain function, so the same
work is callable from Python:

    sympformer train   [--preset P] [--config FILE] [--arch A --scheme S ...]   ExperimentConfig
    sympformer compare --runs a,b+drift=identity [--seeds 3] [--preset P] --out DIR   CompareConfig
    sympformer flow    --problem linear,control [--kappa 10,100] [--seeds 8] --out DIR
    sympformer audit   [--archs a,b] [--schemes a,b] [--variants LABELS] [--dtype float64]
    sympformer sample  --ckpt RUN_OR_CHECKPOINT --prompt TEXT [--max-new-tokens N ...]

The flags are built from the dataclasses by jsonargparse (field docstrings become --help): a
command's own config gives top-level flags (`--runs`), the experiment sections of `train` and
`compare` nested ones (`--model.scheme`, `--train.max_steps`) plus the short forms in `ALIASES`.
Flags may use "-" or "_"; list fields take "a,b" (or YAML "[a, b]"); a boolean flag alone means
true. Precedence where there are sections: preset < --config files < flags, whatever their order.
Bad input of any kind ends with one line "error: ..." on stderr and exit code 2; a signal that
stops training exits with 128 + its number; a bug still shows its traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from jsonargparse import ActionConfigFile, ArgumentParser, Namespace, set_parsing_settings

from sympformer.compare.audit import AuditConfig, format_table, run_audit
from sympformer.compare.flow import FlowStudyConfig
from sympformer.compare.flow_report import SUMMARY_MD
from sympformer.compare.flow_study import run_study
from sympformer.compare.plan import DEFAULT_COMPARE_PRESET, CompareConfig
from sympformer.compare.runner import run_comparison
from sympformer.data import DataConfig
from sympformer.model import ModelConfig
from sympformer.train import (
    DEFAULT_PRESET,
    USER_ERRORS,
    DivergenceError,
    ExperimentConfig,
    TrainConfig,
    TrainingInterrupted,
    fit,
    preset_dict,
)
from sympformer.train.run_dir import CONFIG_JSON
from sympformer.train.sampling import SampleConfig, sample

EXIT_USER_ERROR = 2
SECTIONS = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig}


# -------------------------------------------------------------------------------------------------
# The commands: plain functions of their configs


def train_command(
    experiment: ExperimentConfig, out: Path | None = None, resume: Path | None = None
) -> None:
    """Train a language model into a run folder: config.json, run.json, metrics.csv, checkpoints
    (latest, best), loss.png and samples.txt; prints the final validation loss and the unigram
    entropy of the validation tokens. Under torchrun (`torchrun --nproc_per_node N -m
    sympformer.cli train ...`) each process trains a shard; rank 0 writes the files."""
    fit(experiment, out=out, resume=resume)


def compare_command(
    compare: CompareConfig, out: Path | None, jobs: int = 1, threads: int | None = None
) -> None:
    """Train model variants x seeds on identical data and budget; write Table 1 (results.md,
    results.tex), Figure 2 (curves.png) and summary.json with paired tests. Repeating the
    command continues an interrupted comparison and may add rows."""
    if out is None:
        raise ValueError("compare needs --out DIR (the comparison folder)")
    summary = run_comparison(compare, out, jobs=jobs, threads=threads, command=" ".join(sys.argv))
    print((out / summary["files"][0]).read_text(), end="")


def flow_command(flow: FlowStudyConfig, out: Path, jobs: int = 1) -> None:
    """Accelerated schemes vs the classical flow over seeds, conditioning and damping at equal
    oracle calls (SPEC §5.1): each method at its best step of one grid per metric. Writes
    OUT/instances.csv, curves.csv, summary.md/json and figures; prints summary.md."""
    run_study(flow, out, jobs=jobs)
    print((out / SUMMARY_MD).read_text(), end="")


def audit_command(audit: AuditConfig) -> None:
    """Leakage, cached decoding and finiteness of every model; exit code 1 if a check fails."""
    rows = run_audit(audit, echo=lambda line: print(line, file=sys.stderr))
    print(format_table(rows))
    if not all(r.ok for r in rows):
        sys.exit(1)


def sample_command(sample_cfg: SampleConfig) -> None:
    """Continue a prompt with a trained model (KV-cached decoding) and print the text."""
    print(sample(sample_cfg))


# -------------------------------------------------------------------------------------------------
# The parser, built from the configs


@dataclass(frozen=True)
class Arg:
    """A flag that is not a config field (where to write, how to run)."""

    name: str
    type: Any
    default: Any
    help: str


@dataclass(frozen=True)
class Command:
    run: Callable[..., None]
    """Called with the command's config (or the ExperimentConfig) and the `args` by name."""
    config: type | None = None
    """The command's config dataclass: its fields are top-level flags."""
    sections: str | None = None
    """Default preset if the command takes the experiment sections (model, data, train)."""
    skip: frozenset[str] = frozenset()
    """Fields of `config` that are not flags (filled from the sections)."""
    args: tuple[Arg, ...] = ()
    aliases: Mapping[str, str] = dataclasses.field(default_factory=dict)
    """Short flags of this command (after "-" -> "_"), e.g. --problem for --problems."""


OUT = "Output folder."
COMMANDS: dict[str, Command] = {
    "train": Command(train_command, sections=DEFAULT_PRESET, args=(
        Arg("out", Path | None, None, "Run folder; default runs/<variant>-<time>; refused if it "
            "holds a run."),
        Arg("resume", Path | None, None, "Run folder to continue from its latest checkpoint (its "
            "config.json is the base config; only a few fields may change)."),
    )),
    "compare": Command(compare_command, CompareConfig, DEFAULT_COMPARE_PRESET,
                       frozenset({"base"}), (
        Arg("out", Path | None, None, "Comparison folder (required)."),
        Arg("jobs", int, 1, "Runs trained side by side in separate processes."),
        Arg("threads", int | None, None, "Torch threads per run (default: CPU cores // jobs)."),
    )),
    "flow": Command(flow_command, FlowStudyConfig, aliases={"--problem": "--problems"}, args=(
        Arg("out", Path, Path("runs/flow-study"), OUT),
        Arg("jobs", int, 1, "Processes that run problem instances side by side."),
    )),
    "audit": Command(audit_command, AuditConfig),
    "sample": Command(sample_command, SampleConfig),
}  # fmt: skip
"""Subcommand -> its function, config and other flags."""

ALIASES: dict[str, str] = {
    "--arch": "--model.arch",
    "--scheme": "--model.scheme",
    "--data": "--data.path",
    "--dataset": "--data.dataset",
    "--tokenizer": "--data.tokenizer",
    "--cache_dir": "--data.cache_dir",
    "--max_steps": "--train.max_steps",
    "--seed": "--train.seed",
    "--device": "--train.device",
    "--dtype": "--train.dtype",
    "--compile": "--train.compile",
    "--activation_checkpointing": "--train.activation_checkpointing",
    "--no_matched_gpt": "--matched_gpt=false",  # a "--no-" flag never takes a value
    "--no_wallclock_matched": "--wallclock_matched=false",
}
"""Short flags of the commands with experiment sections (after "-" -> "_")."""

BOOL_WORDS = {"true", "false", "yes", "no", "1", "0", "on", "off"}


def _field_types(command: Command) -> dict[str, Any]:
    """Flag -> type of every config field of the command (sections included)."""
    types: dict[str, Any] = {}
    if command.config is not None:
        hints = typing.get_type_hints(command.config)
        types |= {f"--{f.name}": hints[f.name] for f in dataclasses.fields(command.config)}
    if command.sections:
        for key, kind in SECTIONS.items():
            hints = typing.get_type_hints(kind)
            types |= {f"--{key}.{f.name}": hints[f.name] for f in dataclasses.fields(kind)}
    return types


def _is_bool(kind: Any) -> bool:
    return kind is bool or bool in typing.get_args(kind)


def _is_list(kind: Any) -> bool:
    kinds = (kind, *typing.get_args(kind))
    return any(typing.get_origin(k) in (tuple, list) for k in kinds)


def _of_numbers(kind: Any) -> bool:
    """A list type whose items are numbers (tuple[float, ...], int | tuple[int, ...])."""
    kinds = (kind, *typing.get_args(kind))
    items = [t for k in kinds if typing.get_origin(k) in (tuple, list) for t in typing.get_args(k)]
    return bool(items) and all(t in (int, float, Ellipsis) for t in items)


def _as_list(items: list[str], numbers: bool) -> str:
    """Items as a JSON list: numbers bare (a non-number stays a string, for the config's own
    error), anything else as strings."""
    if not numbers:
        return json.dumps(items)
    return "[" + ", ".join(v if _is_number(v) else json.dumps(v) for v in items) + "]"


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def normalize_flags(name: str, args: Sequence[str]) -> list[str]:
    """Flag names with "_" for "-" and aliases resolved ("--max-steps=5" becomes
    "--train.max_steps=5"); a bare boolean flag gets "true"; "a,b" for a list field becomes a JSON
    list (";" separates `pairs`)."""
    command = COMMANDS[name]
    types = _field_types(command)
    aliases = {**(ALIASES if command.sections else {}), **command.aliases}
    out: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if not arg.startswith("--") or arg == "--":
            out.append(arg)
            continue
        flag, eq, value = arg.partition("=")
        flag = "--" + flag[2:].replace("-", "_")
        flag = aliases.get(flag, flag)
        kind = None if "=" in flag else types.get(flag)
        joined = bool(eq)  # keep the "--flag=value" form
        if not eq and kind is not None and i < len(args) and not args[i].startswith("--"):
            value, eq = args[i], "="
            i += 1
        elif not eq and kind is not None and _is_bool(kind):
            value, eq = "true", "="
        if eq and kind is not None and _is_list(kind) and not value.lstrip().startswith("["):
            sep = ";" if flag == "--pairs" else ","
            if sep in value or not any(t is int for t in typing.get_args(kind)):
                items = [v.strip() for v in value.split(sep) if v.strip()]
                value = _as_list(items, numbers=_of_numbers(kind))
        out += [f"{flag}={value}"] if joined else ([flag, value] if eq else [flag])
    return out


def _preset_in(config: str) -> str | None:
    """The top-level `preset` of a config file (or inline YAML/JSON string), if any."""
    path = Path(config)
    try:
        data = yaml.safe_load(path.read_text() if path.is_file() else config)
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return None  # jsonargparse reports the problem
    return data.get("preset") if isinstance(data, dict) else None


def _values(args: list[str], flag: str) -> tuple[list[str], list[str]]:
    """(values of every `flag V`, the other arguments) of normalised arguments."""
    values, rest, i = [], [], 0
    while i < len(args):
        if args[i] == flag and i + 1 < len(args):
            values.append(args[i + 1])
            i += 2
        else:
            rest.append(args[i])
            i += 1
    return values, rest


def with_base_config(command: Command, args: list[str]) -> list[str]:
    """Arguments ordered as base config (the preset, or a resumed run's config.json), --config
    files, then the flags: so flags win whatever their position."""
    configs, rest = _values(args, "--config")
    presets, _ = _values(rest, "--preset")
    resumes, _ = _values(rest, "--resume")
    if resumes and Path(resumes[-1], CONFIG_JSON).is_file():
        if presets:
            raise ValueError(
                "--preset cannot be combined with --resume: the run's config.json is the base"
            )
        base = str(Path(resumes[-1], CONFIG_JSON))
    else:
        named = [p for p in map(_preset_in, configs) if p]  # the last file naming one wins
        name = presets[-1] if presets else (named[-1] if named else command.sections)
        base = json.dumps(preset_dict(name))
    head = ["--config", base]
    for config in configs:
        head += ["--config", config]
    return head + rest


def build_parser() -> ArgumentParser:
    set_parsing_settings(docstring_parse_attribute_docstrings=True)  # field docs in --help
    parser = ArgumentParser(prog="sympformer", description=__doc__.split("\n\n")[0],
                            exit_on_error=False)  # fmt: skip
    subcommands = parser.add_subcommands()
    for name, command in COMMANDS.items():
        sub = ArgumentParser(description=(command.run.__doc__ or "").strip(), exit_on_error=False)
        if command.sections:
            sub.add_argument("--config", action=ActionConfigFile, help="A YAML config file.")
            sub.add_argument("--preset", type=str, default=command.sections,
                             help="Starting values: a file of sympformer/configs.")  # fmt: skip
            for key, kind in SECTIONS.items():
                sub.add_class_arguments(kind, key, fail_untyped=False)
        if command.config is not None:
            sub.add_class_arguments(command.config, None, skip=set(command.skip))
        for arg in command.args:
            sub.add_argument(f"--{arg.name}", type=arg.type, default=arg.default, help=arg.help)
        subcommands.add_subcommand(name, sub, help=(command.run.__doc__ or "").split("\n")[0])
    return parser


def _call(name: str, ns: Namespace) -> None:
    """Build the command's config from the parsed namespace and run the command with it."""
    command = COMMANDS[name]
    values = ns.as_dict()
    experiment = None
    if command.sections:
        sections = {key: kind(**values[key]) for key, kind in SECTIONS.items()}
        experiment = ExperimentConfig(preset=values.get("preset"), **sections)
    config = experiment
    if command.config is not None:
        fields = {f.name: values[f.name] for f in dataclasses.fields(command.config)
                  if f.name not in command.skip}  # fmt: skip
        if experiment is not None:
            fields["base"] = experiment
        config = command.config(**fields)
    command.run(config, **{arg.name: values[arg.name] for arg in command.args})


def expand_args(args: Sequence[str]) -> list[str]:
    """The command line as jsonargparse should see it (see the module docstring)."""
    args = list(args)
    i = next((k for k, a in enumerate(args) if not a.startswith("-")), None)
    if i is None or args[i] not in COMMANDS:
        return args
    name = args[i]
    tail = normalize_flags(name, args[i + 1 :])
    if COMMANDS[name].sections and not {"-h", "--help"} & set(tail):
        tail = with_base_config(COMMANDS[name], tail)
    return [*args[:i], name, *tail]


USER_ERRORS_CLI: tuple[type[BaseException], ...] = (
    *USER_ERRORS,  # ValueError (DataError, CheckpointError, RunError, config checks), OSError
    argparse.ArgumentError,  # unknown flags, unparsable values
    DivergenceError,
)


def one_line(err: BaseException) -> str:
    text = " ".join(line.strip() for line in str(err).splitlines() if line.strip())
    return text or type(err).__name__


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the `sympformer` console script."""
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        parser = build_parser()
        ns = parser.parse_args(expand_args(args))
        _call(ns.subcommand, ns[ns.subcommand])
    except TrainingInterrupted as stop:
        print(f"error: {stop}", file=sys.stderr)
        sys.exit(stop.exit_code)
    except USER_ERRORS_CLI as err:
        print(f"error: {one_line(err)}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)


if __name__ == "__main__":
    main()
