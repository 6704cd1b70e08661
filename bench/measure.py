#!/usr/bin/env python3
"""Runs one command and measures it: wall time, CPU and memory of its whole process tree.

    measure.py --out RESULT.json [--timeout S] [--sample S] [--stdout F] [--stderr F] -- CMD...

What is measured (written as JSON to --out):
  wall_s           from fork to the exit of CMD itself (not of daemons it leaves behind)
  rc, timeout      exit code (None after a timeout) and whether the time limit killed it
  main_maxrss_mb   peak RSS of CMD's own process (wait4 of CMD)
  tree_maxrss_mb   peak RSS of the largest single process of the tree (getrusage
                   RUSAGE_CHILDREN: what `/usr/bin/time -v` calls "Maximum resident set size")
  cpu_user_s, cpu_sys_s
                   CPU of every process of the tree, once all of them have exited
  sampled_*        the tree sampled every --sample seconds through /proc: the peak of the
                   SUM of RSS (shared pages counted once per process, so it overstates) and
                   of the sum of PSS (shared pages split between the processes sharing them:
                   the honest "memory the tree holds"), and the peak number of processes.

This process makes itself a child subreaper (prctl PR_SET_CHILD_SUBREAPER), so daemons the
command forks off (Ansible's ControlPersist ssh masters) stay in the tree: they are sampled,
ended with SIGTERM once CMD has exited, reaped, and counted in the rusage figures.
Only the standard library is used.
"""
import argparse
import ctypes
import json
import os
import resource
import signal
import sys
import threading
import time

PR_SET_CHILD_SUBREAPER = 36


def children_of(pid):
    out = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for t in tasks:
        try:
            with open(f"/proc/{pid}/task/{t}/children") as f:
                out.extend(int(x) for x in f.read().split())
        except OSError:
            pass
    return out


def tree(root):
    """Every descendant of `root` (not root itself)."""
    seen, stack = [], children_of(root)
    while stack:
        p = stack.pop()
        seen.append(p)
        stack.extend(children_of(p))
    return seen


def rss_pss_kb(pid, want_pss):
    rss = pss = 0
    try:
        with open(f"/proc/{pid}/statm") as f:
            rss = int(f.read().split()[1]) * (os.sysconf("SC_PAGE_SIZE") // 1024)
    except (OSError, IndexError, ValueError):
        return 0, 0
    if want_pss:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        pss = int(line.split()[1])
                        break
        except (OSError, ValueError):
            pss = rss
    return rss, pss


class Sampler(threading.Thread):
    def __init__(self, interval, want_pss):
        super().__init__(daemon=True)
        self.interval = interval
        self.want_pss = want_pss
        self.stop = threading.Event()
        self.peak_rss = self.peak_pss = self.peak_procs = 0
        self.samples = 0

    def run(self):
        me = os.getpid()
        while not self.stop.is_set():
            pids = tree(me)
            r = p = 0
            for pid in pids:
                a, b = rss_pss_kb(pid, self.want_pss)
                r += a
                p += b
            self.peak_rss = max(self.peak_rss, r)
            self.peak_pss = max(self.peak_pss, p)
            self.peak_procs = max(self.peak_procs, len(pids))
            self.samples += 1
            self.stop.wait(self.interval)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--timeout", type=float, default=600.0)
    ap.add_argument("--sample", type=float, default=0.1, help="0 = no sampling")
    ap.add_argument("--no-pss", action="store_true")
    ap.add_argument("--stdout", default=os.devnull)
    ap.add_argument("--stderr", default=os.devnull)
    ap.add_argument("--cwd", default=None)
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    cmd = a.cmd[1:] if a.cmd and a.cmd[0] == "--" else a.cmd
    if not cmd:
        ap.error("no command")

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)

    sampler = None
    if a.sample > 0:
        sampler = Sampler(a.sample, not a.no_pss)
        sampler.start()

    out_f = open(a.stdout, "wb")
    err_f = open(a.stderr, "wb")
    t0 = time.monotonic()
    pid = os.fork()
    if pid == 0:
        try:
            os.setsid()
            if a.cwd:
                os.chdir(a.cwd)
            os.dup2(out_f.fileno(), 1)
            os.dup2(err_f.fileno(), 2)
            devnull = os.open(os.devnull, os.O_RDONLY)
            os.dup2(devnull, 0)
            os.execvp(cmd[0], cmd)
        except Exception as e:  # noqa: BLE001
            os.write(2, f"measure.py: cannot run {cmd[0]}: {e}\n".encode())
        os._exit(127)

    timed_out = threading.Event()

    def kill_group():
        timed_out.set()
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(pid, sig)
            except OSError:
                return
            time.sleep(3)

    timer = threading.Timer(a.timeout, kill_group)
    timer.daemon = True
    timer.start()
    _, status, ru = os.wait4(pid, 0)
    wall = time.monotonic() - t0
    timer.cancel()

    # Daemons left behind (ssh ControlPersist masters, stray workers) were reparented to
    # us: end them (they belong to the command we started), then reap everything.
    deadline = time.monotonic() + 15
    sent_kill = False
    while True:
        left = children_of(os.getpid())
        if not left:
            break
        if time.monotonic() > deadline and not sent_kill:
            sig, sent_kill = signal.SIGKILL, True
        else:
            sig = signal.SIGTERM
        for c in left:
            try:
                os.kill(c, sig)
            except OSError:
                pass
        end = time.monotonic() + 1.0
        while time.monotonic() < end:
            try:
                r, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if r == 0:
                time.sleep(0.02)
        if time.monotonic() > deadline + 10:
            break
    if sampler:
        sampler.stop.set()
        sampler.join(timeout=2)
    ch = resource.getrusage(resource.RUSAGE_CHILDREN)
    rc = os.waitstatus_to_exitcode(status) if not timed_out.is_set() else None
    res = {
        "cmd": cmd,
        "wall_s": round(wall, 4),
        "rc": rc,
        "timeout": timed_out.is_set(),
        "main_maxrss_mb": round(ru.ru_maxrss / 1024, 1),
        "tree_maxrss_mb": round(ch.ru_maxrss / 1024, 1),
        "cpu_user_s": round(ch.ru_utime, 3),
        "cpu_sys_s": round(ch.ru_stime, 3),
        "main_cpu_s": round(ru.ru_utime + ru.ru_stime, 3),
    }
    if sampler:
        res.update(
            sampled_peak_rss_sum_mb=round(sampler.peak_rss / 1024, 1),
            sampled_peak_pss_sum_mb=round(sampler.peak_pss / 1024, 1),
            sampled_peak_procs=sampler.peak_procs,
            samples=sampler.samples,
        )
    with open(a.out, "w") as f:
        json.dump(res, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
