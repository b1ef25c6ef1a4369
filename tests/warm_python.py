"""A warm interpreter for the tests that run scripts as a user types them (`python run.py ...`).

It imports the heavy third-party libraries once (torch, Lightning and what Lightning imports: 5-10 s per launch on
some 2-core machines), then forks one child per request. The child becomes `python <script> <args>`: the request's
environment, working directory, argv, sys.path[0] and standard streams, with the script run as __main__, so its exit
status, uncaught exceptions and interpreter shutdown (atexit, non-daemon threads) are Python's own. Nothing of dmf
is imported here: the code under test is imported fresh by each child.

Protocol, one JSON line per request on stdin: {"script", "args", "cwd", "env", "stdout", "stderr"} (the last two are
files the child writes). Answers on stdout: the child's pid, then its wait status once it ends. EOF ends the server.
"""
import json
import os
import runpy
import sys
import threading

# what a run.py launch imports (a tiny digits training: all of these); import-time only: what a child reads from the
# environment at run time comes from its request
PRELOAD = ("torch", "lightning", "torchmetrics", "torchvision", "hydra", "omegaconf", "scipy.linalg", "sklearn",
           "matplotlib", "torch_fidelity")


def answer(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def serve() -> dict | None:
    """The server's loop; returns in a child, with the request it is to run (None: the server ends)."""
    while line := sys.stdin.readline():
        request = json.loads(line)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            return request
        try:
            os.setpgid(pid, pid)  # also done by the child: whichever runs first, the group exists before the answer
        except OSError:  # the child ended already
            pass
        answer(str(pid))
        _, status = os.waitpid(pid, 0)
        answer(str(status))
    return None


def become(request: dict) -> None:
    """This child turns into `python <script> <args>` started in cwd with env."""
    os.setpgid(0, 0)  # a timeout kills the whole job (e.g. DDP ranks it started)
    for fd, path, flags in ((0, os.devnull, os.O_RDONLY), (1, request["stdout"], os.O_WRONLY),
                            (2, request["stderr"], os.O_WRONLY)):
        opened = os.open(path, flags)
        os.dup2(opened, fd)
        os.close(opened)
    os.environ.clear()
    os.environ.update(request["env"])
    os.chdir(request["cwd"])
    script = request["script"]
    sys.argv = [script, *request["args"]]
    sys.path[0] = os.path.dirname(script)


if __name__ == "__main__":
    for name in PRELOAD:
        __import__(name)
    # fork copies only the calling thread: a thread started by an import would be missing, its locks maybe held
    answer("ready" if threading.active_count() == 1 else f"threads: {threading.enumerate()}")
    job = serve()
    if job is not None:
        become(job)
        runpy.run_path(job["script"], run_name="__main__")
