"""``gradual-jax``: list experiments, show a resolved config, run an experiment, search for a setting.

Every input error (unknown experiment, preset or key, a bad value, missing data)
prints one line naming the field and the allowed values and exits with status 2
before anything is compiled.

XLA flags: on CPU the command turns off XLA's experimental YNNPACK fusions
(``--xla_cpu_experimental_ynn_fusion_type=`` appended to ``XLA_FLAGS``, set before JAX is
imported; faster MLP and ResNet-18 sweeps, see ``benchmarks/README.md``). A user's own setting of
that flag in ``XLA_FLAGS`` wins;
``GRADUAL_JAX_KEEP_XLA_FLAGS=1`` leaves ``XLA_FLAGS`` untouched. See ``gradual_jax/runner/xla_flags.py``.
"""

from __future__ import annotations

from gradual_jax.runner.xla_flags import set_default_xla_flags

set_default_xla_flags()  # before anything below imports jax: XLA reads XLA_FLAGS once, at start-up

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import shlex  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

from gradual_jax import config as config_lib  # noqa: E402
from gradual_jax import experiments  # noqa: E402
from gradual_jax.config import keys as config_keys  # noqa: E402
from gradual_jax.envs import data  # noqa: E402
from gradual_jax.runner import outlock, signals, storage, sweep  # noqa: E402

DEFAULT_PRESET = "cpu"
EXIT_USAGE = 2  # bad input, found before any work: a config value, missing data, a folder in use
EXIT_NONFINITE = 3  # run.on_nonfinite=stop and a lane's loss became NaN/Inf
EXIT_IO = 4  # the output could not be written mid-run (disk full, read-only); rerun to resume
EXIT_INTERRUPTED = 130  # Ctrl-C (SIGINT); rerun to resume
EXIT_TERMINATED = 143  # SIGTERM (SLURM, Kubernetes, `timeout`); rerun to resume


def _experiment_and_preset(args: argparse.Namespace) -> None:
    """``path/to/my_exp.py:study`` names the file and the preset at once; ``--preset`` may
    repeat it but not contradict it."""
    args.experiment, preset = experiments.split_spec(args.experiment)
    if preset and args.preset and preset != args.preset:
        raise config_lib.ConfigError(f"the experiment names preset {preset!r} but --preset says {args.preset!r}; "
                                     "give one of them")
    args.preset = preset or args.preset or DEFAULT_PRESET


def _resolve(args: argparse.Namespace) -> dict[str, config_lib.ExperimentConfig]:
    """Part name -> validated config, with the command line's overrides applied to every part."""
    _experiment_and_preset(args)
    if experiments.is_custom_runner(args.experiment):
        experiments.presets(args.experiment)  # validates the name
        if args.preset not in experiments.presets(args.experiment):
            experiments.get_configs(args.experiment, args.preset)  # raises the preset error
        if args.set:
            raise config_lib.ConfigError(f"{args.experiment} takes no --set overrides")
        return {}
    overrides = list(args.set or [])
    if args.data_dir:
        overrides.append(f"data.data_dir={args.data_dir}")
    for flag, key in (("lanes_per_chunk", "run.lanes_per_chunk"), ("distributed", "run.distributed")):
        value = getattr(args, flag, None)
        if value:
            overrides.append(f"{key}={value}")
    return {part: config_lib.validate(config_lib.apply_overrides(cfg, overrides))
            for part, cfg in experiments.get_configs(args.experiment, args.preset).items()}


def cmd_list(args: argparse.Namespace) -> int:
    for name in experiments.MODULES:
        module = experiments.module(name)
        print(f"{name:<18} {module.DESCRIPTION}\n{'':<18} presets: {', '.join(module.PRESETS)}")
    print("\nYour own experiment: any Python file with PRESETS, e.g. `gradual-jax run my_exp.py:cpu --out OUT`.")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    parts = _resolve(args)
    if args.keys:  # every key that applies to the experiment's model and task family
        for part, cfg in parts.items():
            if part:
                print(f"== part {part} ==")
            print(config_keys.keys_text(cfg.model.name, cfg.task.family), end="")
        if not parts:
            raise config_lib.ConfigError(f"{args.experiment} has its own runner and no config keys")
        return 0
    if args.json:  # JSON only, for jq and scripts: part name ("" for one part) -> config and lanes
        print(json.dumps({part: {"config": config_keys.applicable(cfg),
                                 "lanes": [dict(lane=i, **lane.__dict__) for i, lane in enumerate(sweep.expand(cfg.sweep))]}
                          for part, cfg in parts.items()}, indent=2))
        return 0
    if not parts:
        print(experiments.module(args.experiment).__doc__)
    for part, cfg in parts.items():
        if part:
            print(f"== part {part} ==")
        print(json.dumps(config_keys.applicable(cfg), indent=2))
        lanes = sweep.expand(cfg.sweep)
        print(f"\n{len(lanes)} lanes:")
        for i, lane in enumerate(lanes):
            print(f"  {i:>3}  {lane.label()}")
        for line in sweep.describe_schedules(cfg):
            print("  " + line)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from gradual_jax.runner import compile_cache, resume, sharding, train  # imports JAX; keep `list`/`show` and errors fast

    if not args.out.strip():
        raise config_lib.ConfigError("--out is empty; name the run's folder, e.g. --out results/my-run")
    parts = _resolve(args)
    if args.force_new:
        resume.check_force_new(args.out)
    compile_cache.enable()
    out = Path(args.out)
    if not parts:  # an experiment with its own runner (the theory check)
        _run_custom(args.experiment, args.preset, out, args.command_line)
        return 0
    try:
        for part, cfg in parts.items():
            if part:
                print(f"== part {part} ==")
            train.run(cfg, out / part, force_new=args.force_new, progress=not args.no_progress,
                      reporting=run_reporting(figure=not part), command=args.command_line,
                      experiment_file=args.experiment if experiments.is_path(args.experiment) else None)
    except resume.NonFiniteError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_NONFINITE
    if any(parts) and sharding.is_main_process():  # a multi-part experiment: one figure of every part
        from gradual_jax.analysis import plotting

        print(f"figure:  {plotting.plot_runs([out])[0]}")
    return 0


def run_reporting(figure: bool = True):
    """How a run ends here: the summary of the analysis layer printed and, with ``figure``, the
    figure and summary tables drawn into the run's folder."""
    from gradual_jax.analysis import plotting, summary
    from gradual_jax.runner import train

    return train.Reporting(summary=summary.format_summary,
                           figure=(lambda out: plotting.plot_runs([out])[0]) if figure else None)


def _run_custom(experiment: str, preset: str, out: Path, command: str) -> None:
    """An experiment with its own runner (the theory check), then a ``config.json`` saying what made it."""
    from gradual_jax.runner import results

    experiments.module(experiment).run(out, preset)
    storage.atomic_write_text(out / results.CONFIG_FILE, json.dumps(
        {"experiment": experiment, "preset": preset, "status": "finished",
         "provenance": results.provenance(command), "environment": results.environment()}, indent=2) + "\n")


def cmd_plot(args: argparse.Namespace) -> int:
    """Redraw one run's own figure in place, or draw several runs into the file ``--out`` names
    (never into one of the runs, whose own figure and summary it would overwrite)."""
    from gradual_jax.analysis import plotting

    _check_readable(args.run_dirs)
    if args.out is not None:
        _check_output(args.out)
    try:
        written = plotting.plot_runs(args.run_dirs, out=args.out, x=args.x, metric=args.metric, layout=args.layout)
    except (plotting.ResultsError, plotting.UsageError) as err:
        raise config_lib.ConfigError(str(err)) from None
    except OSError as err:
        if isinstance(err, FileNotFoundError) or storage.storage_error(err):
            raise
        raise config_lib.ConfigError(f"cannot write the figure{f' {err.filename}' if err.filename else ''}: "
                                     f"{err.strerror or err}") from None
    for path in written:
        print(path)
    return 0


def _experiment_files(run_dirs: list[str]) -> list[str]:
    """The researchers' own experiment files the runs in ``run_dirs`` came from (their claims count too)."""
    files = []
    for run_dir in map(Path, run_dirs):
        for meta_file in [run_dir / "config.json", *run_dir.glob("*/config.json")]:
            try:
                found = (json.loads(meta_file.read_text()).get("provenance") or {}).get("experiment_file")
            except (OSError, ValueError, AttributeError):
                continue
            if found and Path(found).is_file():
                files.append(found)
    return files


def cmd_report(args: argparse.Namespace) -> int:
    from gradual_jax.analysis import report

    _check_output(args.out)
    _check_readable(args.run_dirs)
    try:
        path = report.report(args.run_dirs, args.out, report.paper_catalog(_experiment_files(args.run_dirs)))
        if args.readme:
            report.write_readme_summary(Path(args.readme), path)
    except ValueError as err:  # unreadable results, missing arms (MissingArmsError), overlapping seeds
        raise config_lib.ConfigError(str(err)) from None
    except OSError as err:
        if isinstance(err, FileNotFoundError) or storage.storage_error(err):
            raise
        raise config_lib.ConfigError(f"cannot write {args.out}: {err.strerror or err}") from None
    print(path)
    return 0


def cmd_reproduce(args: argparse.Namespace) -> int:
    from gradual_jax import reproduce
    from gradual_jax.analysis import report, runs
    from gradual_jax.runner import train

    root = Path(args.results or ("results" if args.scale == "study" else "results-paper"))
    root.mkdir(parents=True, exist_ok=True)
    catalog = report.paper_catalog()
    finished = runs.load(reproduce.run_folders(root))
    todo = reproduce.steps(catalog, root, args.scale, finished)
    print(reproduce.plan_text(todo))
    if args.dry_run:
        return 0

    def run_one(cfg: config_lib.ExperimentConfig, out: Path, command: str) -> None:
        train.run(cfg, out, progress=not args.no_progress, reporting=run_reporting(), command=command)

    def run_custom(run, out: Path) -> None:
        _run_custom(run.experiment, run.preset, out, f"gradual-jax run {run.experiment} --out {out}")

    reproduce.execute(todo, run_one, run_custom)
    out = root / reproduce.REPORT_FILE
    print(report.report(reproduce.run_folders(root), out, catalog,
                        command_line=f"gradual-jax report {root}/* --out {out}"))
    return 0


def _check_output(out: str) -> None:
    """``--out`` of ``plot`` and ``report`` must name a place for a regular file (not a folder,
    not ``/dev/null``, whose neighbours ``/dev/null.png`` ... would be written)."""
    try:
        storage.check_output_file(out)
    except ValueError as err:
        raise config_lib.ConfigError(str(err)) from None


def _check_readable(run_dirs: list[str]) -> None:
    """Refuse a results table whose last write was cut (its cells would be read as NaN and
    averaged silently); say when a run is still writing a folder (its tables are partial)."""
    for run_dir in map(Path, run_dirs):
        for table in (run_dir / "results.csv", *run_dir.glob("*/results.csv")):
            line = storage.cut_row(table) if table.is_file() else None
            if line is not None:
                raise config_lib.ConfigError(f"{table}, line {line}: a row cut short (the file was cut while "
                                             "written or copied); rerun the run's command to rewrite it")
        holder = outlock.holder(run_dir)
        if holder is not None:
            print(f"note: {run_dir} is in use by a run (process {holder}); its results so far are read",
                  file=sys.stderr)


def cmd_search(args: argparse.Namespace) -> int:
    """Run an experiment's SEARCH candidates (abrupt arm only) and write their table."""
    from gradual_jax.analysis import search

    _experiment_and_preset(args)
    chosen = search.candidates(args.experiment, args.search)
    if args.only:
        names = {c.name for c in chosen}
        unknown = [n for n in args.only if n not in names]
        if unknown:
            raise config_lib.ConfigError(f"--only {', '.join(unknown)}: not a candidate of {args.experiment}; "
                                         f"choose from: {', '.join(c.name for c in chosen)}")
        chosen = tuple(c for c in chosen if c.name in args.only)
    cfgs = search.configs(args.experiment, args.preset, chosen)  # every candidate valid before any compute
    out = Path(args.out)
    if not args.table_only:
        from gradual_jax.runner import compile_cache, resume, train  # imports JAX

        compile_cache.enable()
        for candidate, cfg in zip(chosen, cfgs):
            run_dir = out / candidate.name
            if search.finished(cfg, run_dir):
                print(f"== {candidate.name}: finished earlier ({run_dir}) ==")
                continue
            print(f"== {candidate.name}: {' '.join(candidate.overrides) or '(the preset as it is)'} ==")
            try:
                train.run(cfg, run_dir, progress=not args.no_progress, reporting=run_reporting(),
                          command=search.run_command(args.experiment, args.preset, candidate, out))
            except resume.NonFiniteError as err:  # a diverged candidate is a finding: the table shows it
                print(f"warning: {candidate.name}: {err}", file=sys.stderr)
            search.write(args.experiment, args.preset, out, args.search)
    print(search.write(args.experiment, args.preset, out, args.search))
    return 0


def cmd_analyze(args: argparse.Namespace) -> int:
    from gradual_jax.analysis import analyze  # imports JAX
    from gradual_jax.runner import compile_cache  # imports JAX

    compile_cache.enable()
    analyze.analyze(args.run_dir, args.set or [])
    run_dir = Path(args.run_dir)
    print(f"diagnostics written to {run_dir / 'diagnostics.csv'} (settings in {run_dir / 'diagnostics.json'}); "
          "results.csv is unchanged")
    return 0


def _version() -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version("gradual-jax")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gradual-jax", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="experiments and their presets").set_defaults(func=cmd_list)

    def experiment_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("experiment", help="experiment name (see `gradual-jax list`), or the file of your own "
                                          "experiment, optionally with its preset: path/to/my_exp.py[:preset]")
        p.add_argument("--preset", help=f"preset name (default: {DEFAULT_PRESET})")
        p.add_argument("--set", action="append", metavar="KEY=VALUE",
                       help="override a config field by dotted key, e.g. --set sweep.seeds=0,1,2 "
                            "(repeatable; lists are comma separated)")
        p.add_argument("--data-dir", help="directory of the raw data archives (same as --set data.data_dir=DIR; "
                                          "default $GRADUAL_JAX_DATA_DIR or ~/.cache/gradual_jax/data)")

    show = sub.add_parser("show", help="print the resolved config and its lanes")
    experiment_args(show)
    show.add_argument("--json", action="store_true", help="print JSON only (config and lanes per part)")
    show.add_argument("--keys", action="store_true",
                      help="every config key that applies to the experiment's model and task family: its "
                           "type, default, meaning and allowed values")
    show.set_defaults(func=cmd_show)

    run = sub.add_parser("run", help="run an experiment")
    experiment_args(run)
    run.add_argument("--out", required=True,
                     help="output directory (config.json, results.csv, figure.png, checkpoints/); "
                          "a directory with checkpoints is resumed")
    run.add_argument("--force-new", action="store_true",
                     help="start over, deleting the checkpoints and results in --out (default: resume from "
                          "the latest checkpoint there)")
    run.add_argument("--lanes-per-chunk", type=int, metavar="N",
                     help="run the sweep in chunks of N lanes sharing one executable (for sweeps that do "
                          "not fit in device memory; same as --set run.lanes_per_chunk=N)")
    run.add_argument("--distributed", action="store_true",
                     help="one process per host (or GPU): call jax.distributed.initialize() and spread the lanes "
                          "over every process's devices (also GRADUAL_JAX_DISTRIBUTED=1); the processes find each "
                          "other through SLURM, Open MPI, Kubernetes or Cloud TPU, or through GRADUAL_JAX_COORDINATOR "
                          "(HOST:PORT of process 0), GRADUAL_JAX_NUM_PROCESSES and GRADUAL_JAX_PROCESS_ID")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.set_defaults(func=cmd_run)

    plot = sub.add_parser("plot", help="the paper's figure and a summary table of one or more runs")
    plot.add_argument("run_dirs", nargs="+", metavar="DIR",
                      help="run directories (runs of one data set and model overlay in one panel, others "
                           "sit side by side)")
    plot.add_argument("--x", choices=("task", "samples"), default="task", help="x axis (default: task)")
    plot.add_argument("--out", help="figure file, with a .pdf and the summary tables beside it (default for "
                                    "one DIR: DIR/figure.png; required for several)")
    plot.add_argument("--metric", help="column to plot (default: the experiment's metric)")
    plot.add_argument("--layout", choices=("auto", "curves", "granularity", "delta", "methods", "diagnostics"),
                      default="auto",
                      help="auto: the experiment's figure; curves: the metric per task, one panel per data set "
                           "and model; granularity: the curves and the final window against Δ (Fig. 5); delta: "
                           "the final window against Δ, one line per run; methods: the final window of every "
                           "arm (the mitigations); diagnostics: Fig. 6's four network properties")
    plot.set_defaults(func=cmd_plot)

    report = sub.add_parser("report", help="the claims table (paired differences, verdicts) of finished runs")
    report.add_argument("run_dirs", nargs="+", metavar="DIR", help="finished run directories, and search folders (gradual-jax search --out)")
    report.add_argument("--out", required=True, help="Markdown file to write, e.g. results/REPRODUCTION.md")
    report.add_argument("--readme", metavar="FILE", help="also write the report's summary table into FILE (e.g. "
                                                        "README.md) between its claims-summary markers")
    report.set_defaults(func=cmd_report)

    repro = sub.add_parser("reproduce", help="make every run the paper's claims declare (experiments/claims.py), "
                                              "skipping finished ones, then write the claims report")
    repro.add_argument("--scale", choices=("study", "paper"), default="study",
                       help="study: the declared presets, sized for a 2-core CPU; paper: the same arms and seeds at "
                            "the paper's data, tasks, epochs, model and learning rate (default: study)")
    repro.add_argument("--results", help="folder of the runs and the report (default: results for --scale study, "
                                         "results-paper for --scale paper)")
    repro.add_argument("--dry-run", action="store_true", help="print the plan (runs, lanes, lane-steps, time at "
                                                              "this machine's measured rates) and run nothing")
    repro.add_argument("--no-progress", action="store_true", help="no progress bar")
    repro.set_defaults(func=cmd_reproduce)

    search_p = sub.add_parser("search", help="try an experiment's SEARCH settings (abrupt arm only) for one in "
                                             "which the abrupt arm loses plasticity; writes OUT/search.md")
    search_p.add_argument("experiment", help="experiment name or file, optionally with its preset (default: cpu)")
    search_p.add_argument("--preset", help=f"the preset the candidates start from (default: {DEFAULT_PRESET})")
    search_p.add_argument("--out", required=True, help="folder of the candidates' runs and the search table")
    search_p.add_argument("--search", default="", metavar="NAME", help="which of the experiment's searches "
                                                                        "(its SEARCHES; default: its SEARCH)")
    search_p.add_argument("--only", nargs="+", metavar="NAME", help="run only these candidates")
    search_p.add_argument("--table-only", action="store_true", help="rewrite the table from the runs there, "
                                                                    "running nothing")
    search_p.add_argument("--no-progress", action="store_true", help="no progress bar")
    search_p.set_defaults(func=cmd_search)

    analyze = sub.add_parser("analyze", help="recompute diagnostics from a run's parameter snapshots")
    analyze.add_argument("run_dir", help="a run directory made with --set run.snapshot_every=N")
    analyze.add_argument("--set", action="append", metavar="KEY=VALUE",
                         help="diagnostics settings, e.g. --set diagnostics.probe_size=1024 "
                              "--set diagnostics.hessian_iters=50")
    analyze.set_defaults(func=cmd_analyze)
    return parser


def main(argv: list[str] | None = None) -> int:
    as_process = argv is None  # the console command, not a call from Python (tests, notebooks)
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.command_line = shlex.join(["gradual-jax", *argv])  # what a run's config.json records
    code = _run(args)
    if as_process and code in (EXIT_IO, EXIT_INTERRUPTED, EXIT_TERMINATED):
        signals.leave(code)  # a process, not a call: no hang on a library thread stuck on the disk
    return code


def _run(args: argparse.Namespace) -> int:
    """The command's exit status, every error mapped to one line on stderr."""
    try:
        code = args.func(args)
        sys.stdout.flush()  # a reader that has gone shows up here, in the handler below, not at exit
        return code
    except config_lib.ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt as err:
        name = getattr(err, "name", "SIGINT")
        print(f"interrupted ({name}); run the same command again to resume from the last checkpoint",
              file=sys.stderr)
        return getattr(err, "exit_code", EXIT_INTERRUPTED)
    except (FileNotFoundError, FileExistsError, data.ChecksumError, outlock.FolderInUseError) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:  # e.g. `gradual-jax list | head`: the reader has gone, which is fine
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 0
    except outlock.FolderError as err:  # --out is a file, read-only, ...: before any work
        print(f"error: {err.strerror}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as err:  # mid-run: the data written so far is intact
        return _write_failed(err, args.command)
    except Exception as err:
        mapped = storage.storage_error(err)  # a full disk as a library reports it (tensorstore: ValueError)
        if mapped is None:
            raise
        return _write_failed(mapped, args.command)


def _write_failed(err: OSError, command: str) -> int:
    """Exit 4 with one line: what could not be written, and what to do (a run resumes; a figure or
    report is written whole or not at all, so the same command simply writes it again)."""
    where = f" ({err.filename})" if err.filename else ""
    if command in ("plot", "report"):
        print(f"error: cannot write the {'figure' if command == 'plot' else 'report'}{where}: {err.strerror or err}; "
              "free space or fix the folder, then run the same command again", file=sys.stderr)
    else:
        print(f"error: cannot write the results{where}: {err.strerror or err}; the results and checkpoints "
              "written so far are intact: free space or fix the folder, then run the same command again to "
              "resume", file=sys.stderr)
    return EXIT_IO


if __name__ == "__main__":
    sys.exit(main())
