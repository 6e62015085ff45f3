#!/usr/bin/env python
"""Train a foldlite model: the same as ``foldlite train`` (every option passes through).

    python scripts/train.py --config small                       # train the shipped config
    python scripts/train.py --config small --resume --time-limit 3600

Multi-host on one machine: ``--local-processes N`` starts N processes here, joined through
``jax.distributed`` (CPU collectives over gloo), each loading its own share of every global
batch. This is the multi-host path of ``foldlite.train.trainer`` (on a cluster, start one
``foldlite train`` per host with ``--coordinator HOST:PORT --num-processes P --process-id I``):

    python scripts/train.py --local-processes 2 --config tiny \\
        --set data.path=DATASET --set log_dir=/tmp/run

Process 0 writes the checkpoints, the log and the weights; the result is the same as one process
with N devices (``tests/test_trainer.py`` checks both against one device).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def spawn_local(n: int, train_args: list[str]) -> int:
    """Run ``foldlite train train_args`` as ``n`` processes of one jax.distributed job."""
    port = _free_port()
    procs = []
    for i in range(n):
        env = dict(os.environ, FOLDLITE_COORDINATOR=f"127.0.0.1:{port}",
                   FOLDLITE_NUM_PROCESSES=str(n), FOLDLITE_PROCESS_ID=str(i))
        env.setdefault("JAX_PLATFORMS", "cpu")
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
        args = list(train_args)
        if i > 0 and "--no-progress" not in args:
            args.append("--no-progress")
        procs.append(subprocess.Popen([sys.executable, "-m", "foldlite", "train", *args],
                                      env=env))
    try:
        codes = [p.wait() for p in procs]
    except KeyboardInterrupt:
        for p in procs:
            p.wait()
        return 130
    return max(codes, key=abs)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--local-processes" in argv:
        i = argv.index("--local-processes")
        try:
            n = int(argv[i + 1])
        except (IndexError, ValueError):
            print("train.py: --local-processes needs a number", file=sys.stderr)
            return 2
        return spawn_local(n, argv[:i] + argv[i + 2:])
    sys.path.insert(0, str(REPO))
    from foldlite.cli import main as cli_main
    return cli_main(["train", *argv])


if __name__ == "__main__":
    sys.exit(main())
