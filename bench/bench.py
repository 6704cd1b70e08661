#!/usr/bin/env python3
"""noop50: bosun against Ansible and pyinfra on the same workload, and bosun at scale.

Run through bench/run.sh (see bench/README.md). Only the standard library is used, so the
short form needs neither the venv nor PyPI; the peers come from bench/.venv.

Targets:
  lab       the seven lab hosts of inventory/lab.yml (each a systemd-nspawn container)
  loopback  N inventory hosts, each its own 127.101.x.y address, served by private sshds
            on this machine (sshd listens on at most 16 addresses: one sshd per 16 hosts)

Per round and per tool: remove that tool's directories, time a first converge, check
every file of every host, time a no-op converge, check that nothing changed.
"""
import argparse
import hashlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)
WORKLOAD = os.path.join(BENCH, "noop50")
BASE = "/tmp/bosun-bench"  # every tool writes BASE/<tool>/<host>/...
WORK = os.path.join(BASE, "work")  # generated inventories, keys, logs
TOOLS = ("bosun", "ansible", "pyinfra")  # bosun-b joins only with --bosun-b
CLK_TCK = os.sysconf("SC_CLK_TCK")

LAB_KEY = "/var/lib/bosun/lab/id_ed25519"
LAB_KNOWN_HOSTS = "/var/lib/bosun/lab/known_hosts"


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- expected state


def expected_manifest(host):
    """relative path -> sha256 of the content every tool must produce for `host`."""
    files = {}
    for i in range(20):
        files[f"d{i % 5}/f{i}.txt"] = f"noop50 file {i}\nsecond line\n"
        lines = [
            f"# noop50 template {i} for {host}",
            f"host: {host}",
            f"index: {i}",
        ]
        lines += [f"entry{n}: {host}-{i}-{n}" for n in range(5)]
        lines += [f"upper: {host.upper()}", f"end of template {i}"]
        files[f"d{i % 5}/t{i}.conf"] = "\n".join(lines) + "\n"
    for k in range(5):
        files[f"c{k}.done"] = ""
    return {p: hashlib.sha256(c.encode()).hexdigest() for p, c in files.items()}


def local_manifest(root):
    out = {}
    for dirpath, _dirs, names in os.walk(root):
        for n in names:
            p = os.path.join(dirpath, n)
            with open(p, "rb") as f:
                out[os.path.relpath(p, root)] = hashlib.sha256(f.read()).hexdigest()
    return out


def compare(host, got):
    want = expected_manifest(host)
    if got == want:
        return None
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    wrong = sorted(p for p in set(want) & set(got) if want[p] != got[p])
    return f"{host}: missing {missing[:3]} extra {extra[:3]} wrong content {wrong[:3]}"


# ---------------------------------------------------------------- targets


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def keygen(path):
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", path],
        check=True,
        timeout=30,
    )


def proc_cpu(pid, with_children=True):
    """utime+stime (+ cutime+cstime: children already reaped) of a process, in seconds."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # fields[0] is field 3 (state); utime is field 14 -> index 11.
    ticks = int(fields[11]) + int(fields[12])
    if with_children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / CLK_TCK


def children(pid):
    out = []
    try:
        for t in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{t}/children") as f:
                out.extend(int(x) for x in f.read().split())
    except OSError:
        pass
    return out


class Loopback:
    """Private sshds on 127.101.x.y: own host key, own authorized key, one port."""

    def __init__(self, n, per_sshd=16, stock_bashrc=True):
        self.dir = os.path.join(BASE, "sshd")
        self.bashrc = None
        home_rc = os.path.expanduser("~/.bashrc")
        if stock_bashrc and os.path.isfile(home_rc) and shutil.which("unshare"):
            for cand in ("/usr/share/base-files/dot.bashrc", "/etc/skel/.bashrc"):
                if os.path.isfile(cand):
                    self.bashrc = cand
                    break
        os.makedirs(self.dir, exist_ok=True)
        os.makedirs("/run/sshd", exist_ok=True)
        self.host_key = os.path.join(self.dir, "host_ed25519")
        self.key = os.path.join(self.dir, "client_ed25519")
        keygen(self.host_key)
        keygen(self.key)
        shutil.copy(self.key + ".pub", os.path.join(self.dir, "authorized_keys"))
        with open(self.host_key + ".pub") as f:
            host_pub = " ".join(f.read().split()[:2])
        self.hosts = [(f"h{i + 1:04d}", f"127.101.{i // 250}.{i % 250 + 1}") for i in range(n)]
        self.known_hosts = os.path.join(self.dir, "known_hosts")
        self.procs = []
        sshd = next(p for p in ("/usr/sbin/sshd", "/usr/bin/sshd") if os.path.exists(p))
        for attempt in range(5):
            self.port = free_port()
            try:
                self._start(sshd, per_sshd)
                break
            except RuntimeError as e:
                self.stop()
                if attempt == 4:
                    raise
                log(f"sshd start failed ({e}); trying another port")
        with open(self.known_hosts, "w") as f:
            for _, a in self.hosts:
                f.write(f"[{a}]:{self.port} {host_pub}\n")
        self.ssh_user = "root"

    def _start(self, sshd, per_sshd):
        addrs = [a for _, a in self.hosts]
        groups = [addrs[i : i + per_sshd] for i in range(0, len(addrs), per_sshd)]
        for gi, group in enumerate(groups):
            cfg = os.path.join(self.dir, f"sshd_config.{gi}")
            with open(cfg, "w") as f:
                for a in group:
                    f.write(f"ListenAddress {a}:{self.port}\n")
                f.write(
                    f"HostKey {self.host_key}\n"
                    f"AuthorizedKeysFile {self.dir}/authorized_keys\n"
                    f"PidFile {self.dir}/sshd.{gi}.pid\n"
                    "StrictModes no\nUsePAM no\nPermitRootLogin prohibit-password\n"
                    "PasswordAuthentication no\nKbdInteractiveAuthentication no\n"
                    "MaxStartups 2000:30:2000\nMaxSessions 20\nUseDNS no\nPrintMotd no\n"
                    "X11Forwarding no\nLogLevel ERROR\nSubsystem sftp internal-sftp\n"
                )
            errlog = open(os.path.join(self.dir, f"sshd.{gi}.log"), "wb")
            argv = [sshd, "-D", "-e", "-f", cfg]
            if self.bashrc:
                # Private mount namespace: the sessions of this sshd see a stock Debian
                # root ~/.bashrc instead of this machine's (which runs `pyenv init`, about
                # 0.1 s of CPU for every exec, because bash sources ~/.bashrc under sshd).
                # Nothing outside these sshd processes sees the bind mount.
                argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                        'mount --bind "$0" "$HOME/.bashrc" && exec "$@"', self.bashrc] + argv
            p = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=errlog,
            )
            self.procs.append(p)
        deadline = time.monotonic() + 30
        pending = list(addrs)
        while pending:
            a = pending[0]
            try:
                with socket.create_connection((a, self.port), timeout=1) as s:
                    s.settimeout(2)
                    if s.recv(8).startswith(b"SSH-2.0"):
                        pending.pop(0)
                        continue
            except OSError:
                pass
            for p in self.procs:
                if p.poll() is not None:
                    raise RuntimeError(f"an sshd exited (see {self.dir}/sshd.*.log)")
            if time.monotonic() > deadline:
                raise RuntimeError(f"sshd on {a}:{self.port} did not answer within 30s")
            time.sleep(0.05)
        log(
            f"loopback: {len(self.procs)} sshd process(es) on port {self.port}, "
            f"{len(addrs)} addresses 127.101.0.1..{addrs[-1]}; sessions' ~/.bashrc: "
            + (self.bashrc or "this machine's")
        )

    def sshd_cpu(self):
        """CPU seconds of every sshd (listeners + reaped per-connection children and the
        shells they ran): the server side of the benchmark."""
        return sum(proc_cpu(p.pid) for p in self.procs)

    def wait_idle(self, timeout=30):
        """Waits until no sshd has a child left (every session ended and was reaped)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not any(children(p.pid) for p in self.procs):
                return True
            time.sleep(0.05)
        return False

    def clean(self, tool):
        shutil.rmtree(os.path.join(BASE, tool), ignore_errors=True)

    def manifests(self, tool, hosts):
        return {h: local_manifest(os.path.join(BASE, tool, h)) for h, _ in hosts}

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=10)
        self.procs = []


class Lab:
    """The seven hosts of inventory/lab.yml (containers: paths are checked over ssh)."""

    def __init__(self, bosun, lab_up=True):
        inv = os.path.join(REPO, "inventory", "lab.yml")
        if lab_up:
            st = subprocess.run([bosun, "lab", "status"], capture_output=True, timeout=120)
            if st.returncode != 0:
                log("lab: not every host answers; running `bosun lab up` (not timed)")
                subprocess.run([bosun, "lab", "up"], check=True, timeout=1800)
        out = subprocess.run(
            [bosun, "inventory", "list", "-i", inv, "--output", "json"],
            capture_output=True,
            check=True,
            timeout=60,
        )
        data = json.loads(out.stdout)
        self.hosts = [(h["name"], h["address"]) for h in data["hosts"]]
        self.port = 22
        self.key = LAB_KEY
        self.known_hosts = LAB_KNOWN_HOSTS
        self.ssh_user = "root"
        self.procs = []

    def _ssh_all(self, hosts, script, timeout=120):
        def one(h):
            name, addr = h
            r = subprocess.run(
                [
                    "ssh", "-i", self.key, "-o", f"UserKnownHostsFile={self.known_hosts}",
                    "-o", "GlobalKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=yes",
                    "-o", "BatchMode=yes", "-o", "ConnectTimeout=20", "-p", str(self.port),
                    f"{self.ssh_user}@{addr}", script.replace("@HOST@", name),
                ],
                capture_output=True,
                timeout=timeout,
            )
            return name, r

        with ThreadPoolExecutor(max_workers=16) as ex:
            return dict(ex.map(one, hosts))

    def sshd_cpu(self):
        return None  # each lab host has its own sshd in its own container

    def wait_idle(self, timeout=30):
        return True

    def clean(self, tool):
        for name, r in self._ssh_all(self.hosts, f"rm -rf {BASE}/{tool}").items():
            if r.returncode != 0:
                raise RuntimeError(f"cleaning {tool} on {name}: {r.stderr.decode()}")

    def manifests(self, tool, hosts):
        script = f"cd {BASE}/{tool}/@HOST@ 2>/dev/null && find . -type f -exec sha256sum {{}} +"
        out = {}
        for name, r in self._ssh_all(hosts, script).items():
            m = {}
            for line in r.stdout.decode().splitlines():
                digest, path = line.split(None, 1)
                m[path[2:] if path.startswith("./") else path] = digest
            out[name] = m
        return out

    def stop(self):
        pass


# ---------------------------------------------------------------- per-tool inputs


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def gen_bosun(target, hosts, tag):
    inv = os.path.join(WORK, f"bosun-{tag}.yml")
    lines = [
        "# generated by bench/bench.py",
        "ssh:",
        f"  user: {target.ssh_user}",
        f"  port: {target.port}",
        f"  identity_file: {target.key}",
        f"  known_hosts: {target.known_hosts}",
        "  connect_timeout: 120",
        f"vars: {{ bench_base: {BASE} }}",
        "hosts:",
    ]
    lines += [f"  {h}: {{ address: {a} }}" for h, a in hosts]
    write(inv, "\n".join(lines) + "\n")
    return inv


def gen_ansible(target, hosts, tag, lab):
    d = os.path.join(WORK, f"ansible-{tag}")
    os.makedirs(os.path.join(d, "tmp"), exist_ok=True)
    inv = os.path.join(d, "hosts.yml")
    lines = ["all:", "  vars:", f"    bench_base: {BASE}", "  hosts:"]
    lines += [f"    {h}: {{ ansible_host: {a}, ansible_port: {target.port} }}" for h, a in hosts]
    write(inv, "\n".join(lines) + "\n")
    cfg = os.path.join(d, "ansible.cfg")
    interp = "auto_silent" if lab else "/usr/bin/python3"
    write(
        cfg,
        f"""[defaults]
inventory = {inv}
forks = {max(len(hosts), 5)}
host_key_checking = True
gathering = explicit
remote_user = {target.ssh_user}
private_key_file = {target.key}
interpreter_python = {interp}
retry_files_enabled = False
local_tmp = {d}/tmp
timeout = 60
deprecation_warnings = False
nocolor = True

[ssh_connection]
pipelining = True
ssh_args = -o ControlMaster=auto -o ControlPersist=60s -o UserKnownHostsFile={target.known_hosts} -o GlobalKnownHostsFile=/dev/null -o StrictHostKeyChecking=yes -o BatchMode=yes
""",
    )
    return d, cfg, inv


def gen_pyinfra(target, hosts, tag):
    inv = os.path.join(WORK, f"pyinfra-{tag}", "inventory.py")
    common = {
        "ssh_port": target.port,
        "ssh_user": target.ssh_user,
        "ssh_key": target.key,
        "ssh_known_hosts_file": target.known_hosts,
        "ssh_strict_host_key_checking": "yes",
        "bench_base": BASE,
    }
    entries = [(h, dict(common, ssh_hostname=a)) for h, a in hosts]
    write(inv, "# generated by bench/bench.py\nbench = " + repr(entries) + "\n")
    return inv


# ---------------------------------------------------------------- one timed run


def clean_env():
    env = dict(os.environ)
    env.pop("SSH_AUTH_SOCK", None)
    env["NO_COLOR"] = "1"
    env["LC_ALL"] = "C.UTF-8"
    return env


class Runner:
    def __init__(self, args, target, hosts, tag):
        self.args = args
        self.target = target
        self.hosts = hosts
        self.tag = tag
        self.lab = isinstance(target, Lab)
        self.logs = os.path.join(WORK, "logs")
        os.makedirs(self.logs, exist_ok=True)
        self.inputs = {}
        tools = args.tools
        if "bosun" in tools or "bosun-b" in tools:
            self.inputs["bosun"] = gen_bosun(target, hosts, tag)
        if "ansible" in tools:
            self.inputs["ansible"] = gen_ansible(target, hosts, tag, self.lab)
        if "pyinfra" in tools:
            self.inputs["pyinfra"] = gen_pyinfra(target, hosts, tag)
        self.n = 0

    def command(self, tool):
        env = clean_env()
        n = len(self.hosts)
        if tool in ("bosun", "bosun-b"):
            forks = self.args.forks or n
            binary = self.args.bosun if tool == "bosun" else self.args.bosun_b
            cmd = [
                binary, "converge", "-i", self.inputs["bosun"],
                os.path.join(WORKLOAD, "bosun", "site.yml"),
                "--output", "json", "-f", str(forks), "-e", f"bench_tool={tool}",
            ]
            return cmd, env, None
        if tool == "floor":
            # The floor under any converge: connect, authenticate, run `true`, per host.
            forks = self.args.forks or n
            cmd = [self.args.bosun, "exec", "-i", self.inputs["bosun"], "-l", "all",
                   "-f", str(forks), "--output", "json", "--", "true"]
            return cmd, env, None
        venv_bin = os.path.join(self.args.venv, "bin")
        env["PATH"] = venv_bin + os.pathsep + env["PATH"]
        if tool == "ansible":
            d, cfg, inv = self.inputs["ansible"]
            env["ANSIBLE_CONFIG"] = cfg
            env["ANSIBLE_HOME"] = os.path.join(d, "home")
            # A fresh ControlPersist directory per run: every run starts cold, like bosun.
            cp = tempfile.mkdtemp(prefix="cp", dir=os.path.join(BASE, "work"))
            env["ANSIBLE_SSH_CONTROL_PATH_DIR"] = cp
            cmd = [os.path.join(venv_bin, "ansible-playbook"),
                   os.path.join(WORKLOAD, "ansible", "playbook.yml")]
            return cmd, env, os.path.join(WORKLOAD, "ansible")
        if tool == "pyinfra":
            inv = self.inputs["pyinfra"]
            cmd = [os.path.join(venv_bin, "pyinfra"), "-y", "--parallel", str(max(n, 1)),
                   inv, os.path.join(WORKLOAD, "pyinfra", "deploy.py")]
            return cmd, env, os.path.join(WORKLOAD, "pyinfra")
        raise ValueError(tool)

    def timed(self, tool, phase, timeout):
        """Runs `tool` once under measure.py; returns the measurement plus sshd CPU."""
        self.n += 1
        stem = os.path.join(self.logs, f"{self.tag}-{self.n:03d}-{tool}-{phase}")
        cmd, env, cwd = self.command(tool)
        self.target.wait_idle()
        sshd0 = self.target.sshd_cpu()
        mcmd = [sys.executable, os.path.join(BENCH, "measure.py"), "--out", stem + ".json",
                "--timeout", str(timeout), "--stdout", stem + ".out", "--stderr", stem + ".err",
                "--sample", str(self.args.sample)]
        if cwd:
            mcmd += ["--cwd", cwd]
        subprocess.run(mcmd + ["--"] + cmd, env=env, timeout=timeout + 120, check=True)
        with open(stem + ".json") as f:
            m = json.load(f)
        if not self.target.wait_idle():
            log("warning: sshd sessions still open 30 s after the run")
        sshd1 = self.target.sshd_cpu()
        m["sshd_cpu_s"] = None if sshd0 is None else round(sshd1 - sshd0, 3)
        m["log"] = stem
        return m

    # -- correctness

    def check_files(self, tool):
        got = self.target.manifests(tool, self.hosts)
        errs = [e for h, _ in self.hosts if (e := compare(h, got.get(h, {})))]
        return errs

    def check_report(self, tool, phase, m):
        """What the tool itself said: per-host changed/failed counts."""
        with open(m["log"] + ".out", errors="replace") as f:
            out = f.read()
        names = {h for h, _ in self.hosts}
        if tool in ("bosun", "bosun-b"):
            recap = None
            for line in out.splitlines():
                if line.startswith("{"):
                    ev = json.loads(line)
                    if ev.get("event") == "recap":
                        recap = ev
                    elif ev.get("event") == "host_connected":
                        m.setdefault("connect_s", []).append(ev["seconds"])
            if recap is None:
                return ["no recap in bosun's JSON output"]
            hs = recap["hosts"]
            m["execs_per_host"] = sorted({h["execs"] for h in hs})
            m["changed_total"] = sum(h["changed"] for h in hs)
            m["host_seconds_max"] = round(max(h["seconds"] for h in hs), 3)
            errs = []
            if {h["host"] for h in hs} != names:
                errs.append("recap does not list every host")
            for h in hs:
                if h["failed"] or h["unreachable"]:
                    errs.append(f"{h['host']}: failed={h['failed']} unreachable={h['unreachable']}")
                elif phase == "noop" and h["changed"] != 0:
                    errs.append(f"{h['host']}: no-op changed {h['changed']}")
                elif phase == "first" and h["changed"] != 50:
                    errs.append(f"{h['host']}: first converge changed {h['changed']}, not 50")
            return errs[:5]
        if tool == "ansible":
            import re
            rows = re.findall(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", out, re.M)
            if not rows:
                return ["no PLAY RECAP in Ansible's output"]
            errs = []
            if {r[0] for r in rows} != names:
                errs.append("recap does not list every host")
            m["changed_total"] = sum(int(r[2]) for r in rows)
            for h, _ok, ch, unr, fail in rows:
                if int(unr) or int(fail):
                    errs.append(f"{h}: unreachable={unr} failed={fail}")
                elif phase == "noop" and int(ch):
                    errs.append(f"{h}: no-op changed={ch}")
            return errs[:5]
        if tool == "pyinfra":
            import re
            with open(m["log"] + ".err", errors="replace") as f:
                err = f.read()
            # pyinfra 3 ends with a per-operation table; its last row sums every host:
            #   Grand total    90      -         -       90      (Hosts Success Error No-Change)
            row = re.findall(r"^\s*Grand total\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)", err, re.M)
            if not row:
                return ["no results table in pyinfra's output"]
            num = lambda x: 0 if x == "-" else int(x)  # noqa: E731
            _hosts, changed, errors, _nochange = (num(x) for x in row[-1])
            m["changed_total"] = changed
            errs = []
            if errors:
                errs.append(f"{errors} operation(s) failed")
            if phase == "noop" and changed:
                errs.append(f"no-op changed {changed} operation(s)")
            return errs
        return []

    def progress(self, tool, m):
        """How far a timed-out run got, from its output."""
        try:
            with open(m["log"] + ".out", errors="replace") as f:
                out = f.read()
            with open(m["log"] + ".err", errors="replace") as f:
                out += f.read()
        except OSError:
            return ""
        if tool == "ansible":
            return f" (had started task {out.count('TASK [')} of 4)"
        if tool == "pyinfra":
            return f" (had started operation {out.count('--> Starting operation')} of 50)"
        return ""

    def show_failure(self, m, lines=25):
        """The end of a failed run's output, so a CI log says why without the files."""
        for ext in (".err", ".out"):
            try:
                with open(m["log"] + ext, errors="replace") as f:
                    tail = f.read().splitlines()[-lines:]
            except OSError:
                continue
            if tail:
                log(f"    --- last lines of {m['log']}{ext}")
                for line in tail:
                    log(f"    | {line}")

    def round(self, tool, timeout):
        """Clean, first converge, check files, no-op converge, check report."""
        self.target.clean(tool)
        res = {}
        for phase in ("first", "noop"):
            m = self.timed(tool, phase, timeout)
            errs = []
            if m["timeout"]:
                errs.append(f"timeout after {timeout:.0f}s" + self.progress(tool, m))
            else:
                if m["rc"] != 0:
                    errs.append(f"exit code {m['rc']}")
                errs += self.check_report(tool, phase, m)
                if phase == "first":
                    errs += self.check_files(tool)
            m["errors"] = errs
            res[phase] = m
            status = "timeout" if m["timeout"] else ("ok" if not errs else "FAILED")
            sshd = "" if m["sshd_cpu_s"] is None else f"  sshd cpu {m['sshd_cpu_s']:.2f}s"
            log(
                f"  {tool:8} {phase:5} {m['wall_s']:8.2f}s  rss {m['tree_maxrss_mb']:7.1f} MB"
                f"  cpu {m['cpu_user_s'] + m['cpu_sys_s']:7.2f}s{sshd}  {status}"
                + (f": {errs[0]}" + (f" (+{len(errs) - 1} more)" if len(errs) > 1 else "") if errs else "")
            )
            if errs:
                self.show_failure(m)
            if m["timeout"]:
                break  # a no-op after a timed-out first converge means nothing
        if not self.args.keep_files:
            self.target.clean(tool)
        return res


# ---------------------------------------------------------------- reporting


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(x, p=2):
    return "-" if x is None else f"{x:.{p}f}"


def summarize(runs):
    """runs: list of {first: m, noop: m} -> medians and flags."""
    def col(phase, key):
        return [r[phase][key] for r in runs if phase in r and not r[phase]["timeout"]]

    timeouts = sum(1 for r in runs for p in r.values() if p["timeout"])
    errors = [e for r in runs for p in r.values() for e in p["errors"] if not p["timeout"]]
    s = {
        "rounds": len(runs),
        "first_s": med(col("first", "wall_s")),
        "noop_s": med(col("noop", "wall_s")),
        "first_all": [r["first"]["wall_s"] for r in runs],
        "noop_all": [r["noop"]["wall_s"] for r in runs if "noop" in r],
        "rss_mb": max([r[p]["tree_maxrss_mb"] for r in runs for p in r], default=None),
        "rss_noop_mb": max(col("noop", "tree_maxrss_mb"), default=None),
        "pss_sum_mb": max([r[p].get("sampled_peak_pss_sum_mb") or 0 for r in runs for p in r], default=None),
        "rss_sum_mb": max(col("first", "sampled_peak_rss_sum_mb") + col("noop", "sampled_peak_rss_sum_mb"), default=None),
        "procs": max(col("first", "sampled_peak_procs") + col("noop", "sampled_peak_procs"), default=None),
        "cpu_first": med([m["cpu_user_s"] + m["cpu_sys_s"] for m in (r["first"] for r in runs) if not m["timeout"]]),
        "cpu_noop": med([m["cpu_user_s"] + m["cpu_sys_s"] for m in (r["noop"] for r in runs if "noop" in r) if not m["timeout"]]),
        "sshd_first": med(col("first", "sshd_cpu_s")),
        "sshd_noop": med(col("noop", "sshd_cpu_s")),
        "timeouts": timeouts,
        "errors": errors,
    }
    return s


def print_compare(title, summ):
    b = summ.get("bosun")
    print(f"\n{title}")
    hdr = (f"{'tool':8} {'first s':>9} {'no-op s':>9} {'peak RSS MB':>12} {'tree PSS MB':>12}"
           f" {'ctl CPU s':>15} {'sshd CPU s':>15} {'x first':>8} {'x no-op':>8}  verified")
    print(hdr)
    print("-" * len(hdr))
    for tool, s in summ.items():
        rf = s["first_s"] / b["first_s"] if b and s["first_s"] and b["first_s"] else None
        rn = s["noop_s"] / b["noop_s"] if b and s["noop_s"] and b["noop_s"] else None
        first = fmt(s["first_s"]) if s["first_s"] is not None else "timeout"
        noop = fmt(s["noop_s"]) if s["noop_s"] is not None else "timeout"
        ver = "ok" if not s["errors"] and not s["timeouts"] else (
            f"{s['timeouts']} timeout(s)" if s["timeouts"] and not s["errors"] else f"FAILED: {s['errors'][0]}")
        cpu = f"{fmt(s['cpu_first'], 1)}/{fmt(s['cpu_noop'], 1)}"
        sshd = f"{fmt(s['sshd_first'], 1)}/{fmt(s['sshd_noop'], 1)}"
        print(f"{tool:8} {first:>9} {noop:>9} {fmt(s['rss_mb'], 1):>12} {fmt(s['pss_sum_mb'], 1):>12}"
              f" {cpu:>15} {sshd:>15} {fmt(rf, 1):>8} {fmt(rn, 1):>8}  {ver}")
    print("  first/no-op s: median wall of the rounds; peak RSS: largest single process of the")
    print("  tool's process tree (getrusage RUSAGE_CHILDREN, = /usr/bin/time -v); tree PSS: peak")
    print("  of the summed PSS of all its processes, sampled from /proc; CPU: first/no-op medians,")
    print("  controller tree vs every sshd + remote shell; x: ratio to bosun's median.")
    for tool, s in summ.items():
        print(f"  {tool}: first {s['first_all']}  no-op {s['noop_all']}")


def print_scale(rows):
    print("\nbosun vs host count (noop50, loopback; medians; CPU columns are first/no-op)")
    hdr = (f"{'tool':8} {'hosts':>6} {'forks':>6} {'first s':>9} {'no-op s':>9} {'RSS first MB':>13}"
           f" {'RSS no-op MB':>13} {'bosun CPU s':>13} {'sshd CPU s':>13} {'ms/host bosun':>14}"
           f" {'ms/host sshd':>13}  verified")
    print(hdr)
    print("-" * len(hdr))
    for n, forks, tool, s in rows:
        per_b = per_s = None
        if s["cpu_noop"] is not None:
            per_b = 1000 * s["cpu_noop"] / n
        if s["sshd_noop"] is not None:
            per_s = 1000 * s["sshd_noop"] / n
        ver = "ok" if not s["errors"] and not s["timeouts"] else (s["errors"] or ["timeout"])[0]
        print(f"{tool:8} {n:>6} {forks:>6} {fmt(s['first_s']):>9} {fmt(s['noop_s']):>9}"
              f" {fmt(s['rss_first_mb'], 1):>13} {fmt(s['rss_noop_mb'], 1):>13}"
              f" {fmt(s['cpu_first'], 1) + '/' + fmt(s['cpu_noop'], 1):>13}"
              f" {fmt(s['sshd_first'], 0) + '/' + fmt(s['sshd_noop'], 0):>13}"
              f" {fmt(per_b, 1):>14} {fmt(per_s, 1):>13}  {ver}")
    print("  ms/host: no-op CPU per host, bosun's own and the server side's (sshd, key exchange,")
    print("  remote shell); on 2 shared cores the no-op takes about (bosun + sshd CPU) / 2.")


# ---------------------------------------------------------------- main

PEERS = ("ansible-core==2.19.14", "pyinfra==3.10.0")


def ensure_venv(venv):
    """bench/.venv with the peers from PyPI (only the full benchmark needs it)."""
    py = os.path.join(venv, "bin", "python")
    stamp = os.path.join(venv, "bench-peers.txt")
    want = "\n".join(PEERS) + "\n"
    if os.path.exists(stamp) and open(stamp).read() == want:
        return
    log(f"creating {venv} with {', '.join(PEERS)} from PyPI")
    if not os.path.exists(py):
        subprocess.run([sys.executable, "-m", "venv", venv], check=True, timeout=300)
    subprocess.run([py, "-m", "pip", "install", "-q", *PEERS], check=True, timeout=1200)
    with open(stamp, "w") as f:
        f.write(want)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--short", action="store_true", help="bosun only, 1 round (CI)")
    ap.add_argument("--loopback", type=int, metavar="N", help="loopback mode with N hosts (default: lab mode)")
    ap.add_argument("--scale", default="", help="bosun only, loopback: comma-separated host counts, e.g. 100,1000")
    ap.add_argument("--floor", action="store_true",
                    help="with --scale: also time `bosun exec -- true` on the same hosts (the connection floor)")
    ap.add_argument("--peers-at", default="", help="also run the peers (1 round, --scale-peer-timeout) at these host counts")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--scale-rounds", type=int, default=3)
    ap.add_argument("--tools", default=",".join(TOOLS))
    ap.add_argument("--bosun", default=os.environ.get("BOSUN", os.path.join(REPO, "target", "release", "bosun")))
    ap.add_argument("--bosun-b", help="a second bosun binary, benchmarked as tool bosun-b (A/B)")
    ap.add_argument("--venv", default=os.path.join(BENCH, ".venv"))
    ap.add_argument("--forks", type=int, default=0, help="bosun -f (default: the host count)")
    ap.add_argument("--peer-timeout", type=float, default=900)
    ap.add_argument("--scale-peer-timeout", type=float, default=900)
    ap.add_argument("--bosun-timeout", type=float, default=300)
    ap.add_argument("--per-sshd", type=int, default=16, help="addresses per sshd (its limit is 16)")
    ap.add_argument("--sample", type=float, default=0.1, help="seconds between /proc samples (0: off)")
    ap.add_argument("--no-lab-up", action="store_true", help="lab mode: do not run `bosun lab up` when hosts are down")
    ap.add_argument("--machine-bashrc", action="store_true",
                    help="loopback: let sessions source this machine's ~/.bashrc (default: a stock Debian one)")
    ap.add_argument("--keep-files", action="store_true", help="leave what the tools wrote")
    ap.add_argument("--keep", action="store_true", help="leave /tmp/bosun-bench (inventories, logs)")
    ap.add_argument("--json", help="write every measurement here")
    args = ap.parse_args()
    if args.short:
        args.tools = "bosun"
        args.rounds = 1
        args.scale_rounds = 1
    args.tools = [t for t in args.tools.split(",") if t]
    for t in args.tools:
        if t not in TOOLS + ("bosun-b",):
            ap.error(f"unknown tool {t}")
    scale = [int(x) for x in args.scale.split(",") if x]
    peers_at = [int(x) for x in args.peers_at.split(",") if x]
    if not os.access(args.bosun, os.X_OK):
        ap.error(f"{args.bosun} is not built (cargo build --release, or set BOSUN)")
    if args.bosun_b and "bosun-b" not in args.tools:
        args.tools.insert(1, "bosun-b")
    if "bosun-b" in args.tools and not args.bosun_b:
        ap.error("--tools bosun-b needs --bosun-b PATH")
    peers = [t for t in args.tools if not t.startswith("bosun")]
    if peers:
        ensure_venv(args.venv)
    if os.path.exists(BASE):
        shutil.rmtree(BASE)
    os.makedirs(WORK)

    def on_signal(sig, _frame):
        raise KeyboardInterrupt(f"signal {sig}")

    signal.signal(signal.SIGTERM, on_signal)
    everything = {"args": {k: v for k, v in vars(args).items()}, "results": []}
    target = None
    try:
        biggest = max([args.loopback or 0] + scale + peers_at)
        if args.loopback or scale or peers_at:
            target = Loopback(biggest, args.per_sshd, stock_bashrc=not args.machine_bashrc)
        if args.loopback:
            hosts = target.hosts[: args.loopback]
            mode = f"loopback, {len(hosts)} hosts"
            tgt = target
        elif not scale and not peers_at:
            tgt = Lab(args.bosun, lab_up=not args.no_lab_up)
            hosts = tgt.hosts
            mode = f"lab, {len(hosts)} hosts"
        else:
            tgt = None
        if tgt is not None:
            log(f"noop50 ({mode}): tools {', '.join(args.tools)}; {args.rounds} round(s)")
            r = Runner(args, tgt, hosts, f"main{len(hosts)}")
            runs = {t: [] for t in args.tools}
            for rnd in range(args.rounds):
                log(f"round {rnd + 1}/{args.rounds}")
                for tool in args.tools:  # interleaved: every tool once per round
                    timeout = args.bosun_timeout if tool.startswith("bosun") else args.peer_timeout
                    runs[tool].append(r.round(tool, timeout))
            summ = {t: summarize(v) for t, v in runs.items()}
            everything["results"].append({"mode": mode, "runs": runs, "summary": summ})
            print_compare(f"noop50, {mode}, {args.rounds} round(s), interleaved", summ)
            for t in [t for t in summ if t.startswith("bosun")] if len(hosts) <= 7 else []:
                b = summ[t]
                ok_n = b["noop_s"] is not None and b["noop_s"] <= 0.5
                ok_f = b["first_s"] is not None and b["first_s"] <= 1.0
                print(f"  goals for {t} ({len(hosts)} hosts): no-op <= 0.5 s: {'met' if ok_n else 'MISSED'};"
                      f" first converge <= 1 s: {'met' if ok_f else 'MISSED'}")
        rows = []
        floor_rows = []
        for n in scale:
            log(f"scale: bosun at {n} hosts; {args.scale_rounds} round(s)")
            hosts = target.hosts[:n]
            btools = [t for t in args.tools if t.startswith("bosun")]
            r = Runner(argparse.Namespace(**dict(vars(args), tools=btools)), target, hosts, f"scale{n}")
            runs = {t: [] for t in btools}
            floors = []
            for _ in range(args.scale_rounds):
                for t in btools:  # interleaved, like the main comparison
                    runs[t].append(r.round(t, args.bosun_timeout))
                if args.floor:
                    f = r.timed("floor", "exec", args.bosun_timeout)
                    log(f"  floor    exec  {f['wall_s']:8.2f}s  rss {f['tree_maxrss_mb']:7.1f} MB"
                        f"  cpu {f['cpu_user_s'] + f['cpu_sys_s']:7.2f}s  sshd cpu {f['sshd_cpu_s']:.2f}s"
                        + ("" if f["rc"] == 0 else f"  FAILED: exit code {f['rc']}"))
                    floors.append(f)
            if floors:
                fw = med([f["wall_s"] for f in floors])
                fc = med([f["cpu_user_s"] + f["cpu_sys_s"] for f in floors])
                fs = med([f["sshd_cpu_s"] for f in floors])
                floor_rows.append((n, fw, fc, fs))
            for t in btools:
                s = summarize(runs[t])
                s["rss_first_mb"] = max((x["first"]["tree_maxrss_mb"] for x in runs[t]), default=None)
                s["rss_noop_mb"] = max((x["noop"]["tree_maxrss_mb"] for x in runs[t] if "noop" in x), default=None)
                rows.append((n, args.forks or n, t, s))
            everything["results"].append({"mode": f"scale {n}", "runs": runs})
        if rows:
            print_scale(rows)
            for n, fw, fc, fs in floor_rows:
                print(f"  floor at {n} hosts (`bosun exec -- true`: connect, authenticate, one exec):"
                      f" {fw:.2f} s wall, bosun {1000 * fc / n:.1f} ms/host, sshd {1000 * fs / n:.1f} ms/host")
            for n, _f, t, s in rows:
                if n >= 1000:
                    ok = s["noop_s"] is not None and s["noop_s"] <= 15 and (s["rss_noop_mb"] or 0) <= 300
                    print(f"  goal for {t} at {n} hosts: no-op <= 15 s with peak RSS <= 300 MB: {'met' if ok else 'MISSED'}")
        for n in peers_at:
            hosts = target.hosts[:n]
            tools = [t for t in args.tools]
            log(f"peers at {n} hosts: {', '.join(tools)}; 1 round, timeout {args.scale_peer_timeout:.0f}s")
            r = Runner(argparse.Namespace(**dict(vars(args), tools=tools)), target, hosts, f"peers{n}")
            runs = {t: [r.round(t, args.bosun_timeout if t.startswith("bosun") else args.scale_peer_timeout)] for t in tools}
            summ = {t: summarize(v) for t, v in runs.items()}
            everything["results"].append({"mode": f"peers {n}", "runs": runs, "summary": summ})
            print_compare(f"noop50, loopback, {n} hosts, 1 round", summ)
    except KeyboardInterrupt as e:
        log(f"interrupted ({e}); cleaning up")
        return 130
    finally:
        if target is not None:
            target.stop()
        if args.json:
            with open(args.json, "w") as f:
                json.dump(everything, f, indent=1, default=str)
        if not args.keep:
            shutil.rmtree(BASE, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
