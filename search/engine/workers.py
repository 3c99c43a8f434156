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

import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass

from polyp.config import TrainConfig
from polyp.train.loader import AUTO, MAX_AUTO_WORKERS, usable_cores
from search.study.errors import CommandLineError

INTERRUPTED = 130  # a command's exit status after Ctrl-C (and the workers' together, when every one was)
BAD_INPUT = 2  # a command's exit status for the project's errors (search.cli.fail)
WORKER_FLAGS = ("--workers", "--devices")  # what the parent takes; the workers get the rest of the command line


@dataclass(frozen=True)
class WorkerPlan:
    """What each worker gets: extra arguments and environment."""

    argv: list[list[str]]
    environments: list[dict[str, str]]
    threads: int = 0  # the training threads given to each worker (0: none given; the study's or every core)


def _cuda_devices(devices: str | None, device: str | None) -> list[str]:
    """The CUDA_VISIBLE_DEVICES entry of each device the workers take in turn ([] on the CPU).

    Device numbers count the GPUs this process sees: under a CUDA_VISIBLE_DEVICES of its own (a batch
    scheduler's), cuda:1 is the second entry of that list, which is what each worker is given.
    """
    visible = [d.strip() for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    if devices:
        if device == "cpu":
            raise CommandLineError(f"--devices {devices} with --device cpu: choose one")
        names = [d.strip() for d in devices.split(",") if d.strip()]
        bad = [d for d in names if not (d.startswith("cuda:") and d[5:].isdigit())]
        if bad:
            raise CommandLineError(f"--devices {devices}: {', '.join(bad)} is not cuda:N")
        indices = [int(d[5:]) for d in names]
        if visible and max(indices) >= len(visible):
            raise CommandLineError(f"--devices {devices}: this process sees {len(visible)} GPU(s) "
                                   f"(CUDA_VISIBLE_DEVICES={','.join(visible)})")
    elif device == "cpu":
        return []
    else:
        import torch

        indices = list(range(torch.cuda.device_count()))
    return [visible[i] if visible else str(i) for i in indices]


def plan_workers(workers: int, devices: str | None, device: str | None, argv: list[str], base: TrainConfig,
                 cpu_count: int | None = None) -> WorkerPlan:
    """Each worker's command line and environment.

    A worker gets this command line without --workers/--devices (and with `--workers 1`, which also beats an
    abbreviated flag), plus its share of the machine where neither the command line nor the study set it
    (`base`, the study's config as this command runs it): on CUDA one device and a few loader processes, on
    the CPU cores / N training threads and no loader processes.
    """
    if workers < 1:
        raise CommandLineError(f"--workers {workers}: must be 1 or more")
    command = [*_without_worker_flags(argv), "--workers", "1"]
    cuda = _cuda_devices(devices, device)
    cores = cpu_count or usable_cores()
    share: list[str] = []
    threads = 0
    if cuda:
        share += ["--device", "cuda"] if device is None else []
        if base.loader_workers == AUTO:
            share += ["--loader-workers", str(max(1, min(MAX_AUTO_WORKERS, (cores - 1) // workers)))]
    else:
        threads = 0 if base.threads else max(1, cores // workers)
        share += ["--threads", str(threads)] if threads else []
        share += ["--loader-workers", "0"] if base.loader_workers == AUTO else []
    environments = []
    for index in range(workers):
        env = dict(os.environ)
        if cuda:
            env["CUDA_VISIBLE_DEVICES"] = cuda[index % len(cuda)]
        environments.append(env)
    return WorkerPlan([[*command, *share] for _ in range(workers)], environments, threads)


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
            try:
                sys.stdout.write(f"[worker {number}] {line}")
                sys.stdout.flush()
            except OSError:  # our own output is gone (a closed pipe): keep draining, so the worker never blocks
                pass


def _wait_all(processes: list[subprocess.Popen]) -> list[int]:
    """Waits for every worker; an interrupt is passed on once to each, later ones only wait."""
    try:
        return [process.wait() for process in processes]
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM reached this process only (workers have their own session)
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN), signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            for process in processes:
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)
            return [process.wait() for process in processes]
        finally:
            signal.signal(signal.SIGINT, previous[0])
            signal.signal(signal.SIGTERM, previous[1])


def run_workers(module: str, plan: WorkerPlan) -> int:
    """Starts `python -m module` once per planned worker, relays their output and waits.

    Returns:
        0 when every worker ended well; otherwise the workers' common exit status (130 when interrupted,
        2 for bad input), or 1 when they ended differently.
    """
    lock, processes = threading.Lock(), []
    try:
        for argv, env in zip(plan.argv, plan.environments, strict=True):
            processes.append(subprocess.Popen([sys.executable, "-m", module, *argv], env=env, stdout=subprocess.PIPE,
                                              stderr=subprocess.STDOUT, text=True, errors="replace", bufsize=1,
                                              start_new_session=True))
        relays = [threading.Thread(target=_relay, args=(number, process.stdout, lock), daemon=True)
                  for number, process in enumerate(processes, start=1)]
        for relay in relays:
            relay.start()
        print(f"started {len(processes)} workers: pids {', '.join(str(p.pid) for p in processes)}", flush=True)
        codes = _wait_all(processes)
        for relay in relays:
            relay.join(timeout=10)
    finally:
        for process in processes:  # only if this function itself failed: no worker is left behind
            if process.poll() is None:
                process.kill()
    failed = [(number, process.pid, code) for number, (process, code)
              in enumerate(zip(processes, codes, strict=True), start=1) if code != 0]
    for number, pid, code in failed:
        how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"
        print(f"worker {number} (pid {pid}) ended badly: {how}", file=sys.stderr, flush=True)
    if not failed:
        return 0
    interrupted = {INTERRUPTED, -signal.SIGINT, -signal.SIGTERM}
    if all(code in interrupted for _, _, code in failed):
        return INTERRUPTED
    codes_seen = {code for _, _, code in failed}
    return codes_seen.pop() if len(codes_seen) == 1 and min(codes_seen) > 0 else 1
