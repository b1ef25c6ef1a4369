"""What run.py does to the command line before Hydra parses it: rules about values Hydra would take otherwise
than the user means, each with one clear error or the one reading that can be meant."""
from pathlib import Path

from dmf.core.errors import ConfigError
from dmf.core.launch import leads_launch


def command_line(args: list[str]) -> list[str]:
    for arg in args:
        check_quoting(arg)
        check_empty(arg)
    return with_one_record(with_run_dir(args))


def check_empty(arg: str) -> None:
    """`ckpt=$CKPT` with the variable unset reaches Hydra as `ckpt=`, an empty string that reads as "not given"
    (an experiment that requires a checkpoint trained from random weights)."""
    if (kv := _split(arg)) is not None and not arg.startswith("~") and not kv[1].strip():
        raise ConfigError(f"{arg} has no value (an unset shell variable?): give one, or {kv[0]}=null to clear it")


def _split(arg: str) -> tuple[str, str] | None:
    """(key, value) of an override `[+|++|~]key=value`; None for flags such as -m."""
    if arg.startswith("-") or "=" not in arg:
        return None
    key, value = arg.split("=", 1)
    return key.lstrip("+~"), value


def check_quoting(arg: str) -> None:
    """An unquoted value with '=' in it (a sweep job's folder, e.g. .../guidance.omega=0.6,sampler=restart/...)
    is a Hydra grammar error ("mismatched input '='"): say what it is and give the quoted override to paste."""
    if (kv := _split(arg)) is None:
        return
    key, value = kv
    depth, quote, escaped = 0, None, False
    for ch in value:
        if escaped:  # Hydra's \= is a literal '='
            escaped = False
        elif ch == "\\":
            escaped = True
        elif quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "=" and depth == 0:
            raise ConfigError(
                f"the value of {key} contains '=' ({value}), which Hydra reads as another key; a path with '=' (a "
                f"sweep job's folder) must be quoted: {key}=\"'{value}'\" (the shell keeps the inner quotes)")


def unquoted(value: str) -> str:
    """Hydra reads `"x"` and `'x'` as x (Lightning's DDP launcher passes the run's folder back quoted)."""
    return value[1:-1] if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"" else value


def with_run_dir(args: list[str]) -> list[str]:
    """`run_dir=X` means the run's whole folder: on a single run it also sets `hydra.run.dir=X`, so Hydra's
    run.log and .hydra/ land beside the checkpoints (run_dir alone moved only what the code writes). A sweep's
    jobs each have their own folder under `hydra.sweep.dir`, so there one run_dir for all is refused."""
    def value(key):
        found = [kv[1] for kv in map(_split, args) if kv and kv[0] == key]
        return found[-1] if found else None

    run_dir, hydra_dir = value("run_dir"), value("hydra.run.dir")
    for key, folder in (("run_dir", run_dir), ("hydra.run.dir", hydra_dir)):
        if folder is not None and Path(unquoted(folder)).expanduser().is_file():
            raise ConfigError(f"{key}={folder} is a file, not a folder: a run's folder holds its checkpoints and "
                              f"records; choose another path")
    if run_dir is None:
        return args
    if "-m" in args or "--multirun" in args or value("hydra.mode") == "MULTIRUN":
        raise ConfigError(f"run_dir={run_dir} names one run's folder, but a sweep (-m) gives each job its own: "
                          f"set hydra.sweep.dir={run_dir} instead (jobs go to its sub-folders)")
    if hydra_dir is None:
        return [*args, f"hydra.run.dir={run_dir}"]
    if unquoted(hydra_dir) != unquoted(run_dir):
        raise ConfigError(f"run_dir={run_dir} and hydra.run.dir={hydra_dir} name two folders for one run; "
                          f"give one of them")
    return args


def new_folder(args: list[str]) -> bool:
    """This launch's folder does not exist yet: Hydra's dated default, or a typed hydra.run.dir / hydra.sweep.dir
    that is not there."""
    typed = [unquoted(kv[1]) for kv in map(_split, args) if kv and kv[0] in ("hydra.run.dir", "hydra.sweep.dir")]
    return not any(Path(folder).expanduser().exists() for folder in typed)


def with_one_record(args: list[str]) -> list[str]:
    """Only rank 0 of a torchrun or `srun -n N` launch writes the run's record (.hydra/): the ranks share its folder,
    and another rank rewriting the record could race rank 0 copying it into config_history/. Lightning's own rank
    relaunches (trainer.devices=N) pass the same override."""
    if leads_launch() or any(kv and kv[0] == "hydra.output_subdir" for kv in map(_split, args)):
        return args
    return [*args, "hydra.output_subdir=null"]
