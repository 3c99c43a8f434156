"""Several workers from one command: `search.run --workers N` (and `search.replay`).

The command starts N copies of itself without `--workers`, on this machine, sharing the study through its
storage exactly as workers on separate machines do. On CUDA each worker sees one device of `--devices`
(round-robin when N exceeds them, through CUDA_VISIBLE_DEVICES); on the CPU the cores are split between
the workers (each gets `--threads cores/N` unless `--threads` is given). Every line a worker prints is
prefixed with its number. Ctrl-C (or SIGTERM) to the command is passed on once to every worker, which marks
its running trial failed as a single worker does; a worker that dies is reported, and its trial is retried by the
heartbeat as always. The exit status is 0 only when every worker ended well.

Example:
    python -m search.run --study demo --n-trials 8 --workers 2
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass

from search.options import CommandLineError

WORKER_FLAGS = ("--workers", "--devices")  # what the parent takes; the workers get the rest of the command line


def add_worker_options(parser: argparse.ArgumentParser) -> None:
    """--workers and --devices."""
    parser.add_argument("--workers", type=int, default=1,
                        help="worker processes to start on this machine, sharing the study (default 1: this process)")
    parser.add_argument("--devices", help="with --workers on CUDA: comma-separated devices, e.g. cuda:0,cuda:1 "
                        "(default: every visible GPU; round-robin when --workers exceeds them)")


@dataclass(frozen=True)
class WorkerPlan:
    """What each worker gets: extra arguments and environment."""

    argv: list[list[str]]
    environments: list[dict[str, str]]


def _cuda_devices(args: argparse.Namespace) -> list[str]:
    if args.devices:
        devices = [d.strip() for d in args.devices.split(",") if d.strip()]
        bad = [d for d in devices if not (d.startswith("cuda:") and d[5:].isdigit())]
        if bad:
            raise CommandLineError(f"--devices {args.devices}: {', '.join(bad)} is not cuda:N")
        return [d[5:] for d in devices]
    if args.device == "cpu":
        return []
    import torch

    return [str(index) for index in range(torch.cuda.device_count())]


def plan_workers(args: argparse.Namespace, argv: list[str], cpu_count: int | None = None) -> WorkerPlan:
    """Each worker's command line (this one without --workers/--devices, plus its threads or device) and env."""
    if args.workers < 1:
        raise CommandLineError(f"--workers {args.workers}: must be 1 or more")
    base = _without_worker_flags(argv)
    devices = _cuda_devices(args)
    plans, environments = [], []
    for index in range(args.workers):
        extra, env = [], dict(os.environ)
        if devices:
            env["CUDA_VISIBLE_DEVICES"] = devices[index % len(devices)]
            if args.device is None:
                extra += ["--device", "cuda"]
        elif args.threads is None:
            extra += ["--threads", str(max(1, (cpu_count or os.cpu_count() or 1) // args.workers))]
        plans.append([*base, *extra])
        environments.append(env)
    return WorkerPlan(plans, environments)


def _without_worker_flags(argv: list[str]) -> list[str]:
    kept, skip = [], False
    for word in argv:
        if skip:
            skip = False
            continue
        name = word.split("=", 1)[0]
        if name in WORKER_FLAGS:
            skip = "=" not in word
            continue
        kept.append(word)
    return kept


def _relay(number: int, stream, lock: threading.Lock) -> None:
    for line in stream:
        with lock:
            sys.stdout.write(f"[worker {number}] {line}")
            sys.stdout.flush()


def run_workers(module: str, plan: WorkerPlan) -> int:
    """Starts `python -m module` once per planned worker, relays their output, waits; 0 if all ended well."""
    lock = threading.Lock()
    processes = [subprocess.Popen([sys.executable, "-m", module, *argv], env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True, bufsize=1, start_new_session=True)
                 for argv, env in zip(plan.argv, plan.environments, strict=True)]
    relays = [threading.Thread(target=_relay, args=(number, process.stdout, lock), daemon=True)
              for number, process in enumerate(processes, start=1)]
    for relay in relays:
        relay.start()
    print(f"started {len(processes)} workers: pids {', '.join(str(p.pid) for p in processes)}", flush=True)
    try:
        codes = [process.wait() for process in processes]
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM reached this process only (workers have their own session)
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        codes = [process.wait() for process in processes]
    for relay in relays:
        relay.join(timeout=10)
    failed = [(number, process.pid, code) for number, (process, code) in enumerate(zip(processes, codes, strict=True),
                                                                                    start=1) if code != 0]
    for number, pid, code in failed:
        how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"
        print(f"worker {number} (pid {pid}) ended badly: {how}", file=sys.stderr, flush=True)
    if not failed:
        return 0
    return 130 if all(code in (130, -signal.SIGINT, -signal.SIGTERM) for _, _, code in failed) else 1
