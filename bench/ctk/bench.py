#!/usr/bin/env python3
"""faultline vs Chaos Toolkit on the same Chaos Toolkit files (see ctk_compare.sh).

Each command runs as a child of this script; its wall time is measured around
spawn..exit and its peak RSS comes from os.wait4() (ru_maxrss of that child).
All traffic goes to a python3 -m http.server on 127.0.0.1 started here.
"""

import argparse
import datetime
import json
import os
import platform
import random
import shutil
import socket
import statistics
import subprocess
import sys
import time


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


TIME = "/usr/bin/time"


def measure(argv, env, cwd):
    """Runs argv once under GNU time: (wall seconds, peak RSS KiB, exit code).
    (ru_maxrss from wait4() here would include this Python process's own
    memory, inherited across fork until exec.)"""
    rss_file = os.path.join(cwd, ".rss")
    t0 = time.perf_counter()
    p = subprocess.run([TIME, "-f", "%M", "-o", rss_file] + argv, env=env, cwd=cwd,
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    with open(rss_file) as f:
        lines = [x for x in f.read().split() if x.isdigit()]
    return wall, int(lines[-1]), p.returncode


def series(argv, env, cwd, runs, want_code):
    return interleaved([(argv, env)], cwd, runs, want_code)[0]


def interleaved(commands, cwd, runs, want_code):
    """Runs each (argv, env) of `commands` `runs` times, taking turns (a, b,
    a, b, ...), so a change in the machine's load hits every command alike
    and their ratio stays fair on a shared machine."""
    walls = [[] for _ in commands]
    rss = [[] for _ in commands]
    for _ in range(runs):
        for i, (argv, env) in enumerate(commands):
            w, r, code = measure(argv, env, cwd)
            if code != want_code:
                out = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True)
                sys.exit("unexpected exit %s (wanted %s) from %s\n%s\n%s"
                         % (code, want_code, " ".join(argv), out.stdout[-2000:],
                            out.stderr[-2000:]))
            walls[i].append(w)
            rss[i].append(r)
    return [summary(w, r, runs) for w, r in zip(walls, rss)]


def summary(walls, rss, runs):
    return {"wall_s": statistics.median(walls), "rss_kib": statistics.median(rss),
            "wall_q1": quartiles(walls)[0], "wall_q3": quartiles(walls)[1],
            "wall_min": min(walls), "wall_max": max(walls),
            "rss_min": min(rss), "rss_max": max(rss), "runs": runs}


def quartiles(xs):
    """(first quartile, third quartile): the middle half of the runs."""
    if len(xs) < 2:
        return (xs[0], xs[0])
    q = statistics.quantiles(xs, n=4, method="inclusive")
    return (q[0], q[2])


def wait_http(url, timeout=10):
    import urllib.request
    end = time.time() + timeout
    while time.time() < end:
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except Exception:
            time.sleep(0.05)
    sys.exit("the HTTP server at %s did not come up" % url)


def detection(argv, env, cwd, health_file, flip_after, runs, rng):
    """Starts the run, deletes the health file after `flip_after` s plus a
    random 0-1 s (the server then answers 404), returns the median seconds
    from the flip to the process's exit. A real failure lands at a random
    point of both tools' cycles (faultline's 0.1 s sampling period, Chaos
    Toolkit's 0.5 s activities); a fixed point would favour one of them."""
    out = []
    offsets = []
    for _ in range(runs):
        offset = rng.uniform(0.0, 1.0)
        offsets.append(offset)
        with open(health_file, "w") as f:
            f.write("ok\n")
        p = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(flip_after + offset)
        if p.poll() is not None:
            sys.exit("%s ended before the flip (exit %s)" % (argv[0], p.returncode))
        t_flip = time.perf_counter()
        os.remove(health_file)
        try:
            p.wait(timeout=120)
        except subprocess.TimeoutExpired:
            p.kill()
            sys.exit("%s did not stop within 120 s of the failure" % argv[0])
        out.append(time.perf_counter() - t_flip)
        if p.returncode == 0:
            sys.exit("%s ended with exit 0 after the target failed" % argv[0])
    with open(health_file, "w") as f:
        f.write("ok\n")
    q1, q3 = quartiles(out)
    return {"stop_s": statistics.median(out), "q1": q1, "q3": q3, "min": min(out),
            "max": max(out), "runs": runs, "samples": out, "offsets": offsets}


def state_tmpfs(work):
    """A faultline state dir on a tmpfs: /run/faultline when /run is one,
    else under /dev/shm, else (no tmpfs) in the work dir."""
    mounts = {}
    try:
        for line in open("/proc/mounts"):
            parts = line.split()
            mounts[parts[1]] = parts[2]
    except OSError:
        pass
    if mounts.get("/run") == "tmpfs" and os.geteuid() == 0:
        return "/run/faultline"
    if mounts.get("/dev/shm") == "tmpfs":
        return os.path.join("/dev/shm", "faultline-bench-%d" % os.getpid())
    return os.path.join(work, "state-tmp")


def cpu_model():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--chaos", required=True)
    ap.add_argument("--faultline", required=True)
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--work", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=None,
                    help="seed of the random failure points in the detection measure")
    a = ap.parse_args()
    runs = max(a.runs, 10)
    if not os.access(TIME, os.X_OK):
        sys.exit("%s is missing: install the Debian package `time`" % TIME)
    work = a.work
    site = os.path.join(work, "site")
    os.makedirs(site, exist_ok=True)
    health = os.path.join(site, "health.txt")
    with open(health, "w") as f:
        f.write("ok\n")
    port = free_port()
    base = "http://127.0.0.1:%d/health.txt" % port
    server = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind",
                               "127.0.0.1", "--directory", site],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_http(base)
        return run_all(a, runs, work, base, health)
    finally:
        server.terminate()
        server.wait()


def run_all(a, runs, work, base, health):
    env = dict(os.environ)
    env["NO_COLOR"] = "1"
    # faultline's state dir (undo journal, fsynced before anything changes)
    # is /run/faultline as root, a tmpfs on standard hosts. Use a tmpfs the
    # same way; the on-disk case is measured separately.
    tmpfs = state_tmpfs(work)
    env["FAULTLINE_STATE_DIR"] = tmpfs
    env_disk = dict(env, FAULTLINE_STATE_DIR=os.path.join(work, "state"))
    probe = {"type": "probe", "name": "health", "tolerance": 200,
             "provider": {"type": "http", "url": base, "timeout": 3}}
    one_probe = {"title": "validate one probe", "description": "bench",
                 "steady-state-hypothesis": {"title": "up", "probes": [probe]},
                 "method": [{"type": "action", "name": "noop",
                             "provider": {"type": "process", "path": "true"}}]}
    run_exp = dict(one_probe, title="one probe, one action")
    # Detection: 60 short actions (30 s); the server fails 3 s in.
    detect_exp = dict(one_probe, title="detection",
                      method=[{"type": "action", "name": "step-%d" % i,
                               "provider": {"type": "process", "path": "sleep",
                                            "arguments": ["0.5"]}} for i in range(60)])
    files = {}
    for name, exp in [("validate", one_probe), ("run", run_exp), ("detect", detect_exp)]:
        files[name] = os.path.join(work, name + ".json")
        with open(files[name], "w") as f:
            json.dump(exp, f, indent=2)

    chaos = [a.chaos, "--no-version-check"]
    fl = [a.faultline]
    cmds = {
        ("validate", "chaos"): chaos + ["validate", files["validate"]],
        ("validate", "faultline"): fl + ["validate", files["validate"]],
        ("run", "chaos"): chaos + ["run", "--journal-path", os.path.join(work, "j-ctk.json"),
                                   files["run"]],
        ("run", "faultline"): fl + ["run", "--chaostoolkit", "--journal-format", "chaostoolkit",
                                    "--journal", os.path.join(work, "j-fl.json"), "-q",
                                    files["run"]],
        ("detect", "chaos"): chaos + ["run", "--journal-path", os.path.join(work, "j-ctk-d.json"),
                                      "--hypothesis-strategy", "continuously",
                                      "--hypothesis-frequency", "0.1", "--fail-fast",
                                      files["detect"]],
        ("detect", "faultline"): fl + ["run", "--chaostoolkit", "--hypothesis-strategy",
                                       "continuously", "--hypothesis-frequency", "0.1",
                                       "--fail-fast", "--journal-format", "chaostoolkit",
                                       "--journal", os.path.join(work, "j-fl-d.json"), "-q",
                                       files["detect"]],
    }
    res = {}
    print("validate: both tools, taking turns", flush=True)
    res[("validate", "chaos")], res[("validate", "faultline")] = interleaved(
        [(cmds[("validate", "chaos")], env), (cmds[("validate", "faultline")], env)],
        work, runs, 0)
    print("run: both tools, taking turns (faultline also with its state dir on disk)",
          flush=True)
    res[("run", "chaos")], res[("run", "faultline")], res[("run-disk", "faultline")] = \
        interleaved([(cmds[("run", "chaos")], env), (cmds[("run", "faultline")], env),
                     (cmds[("run", "faultline")], env_disk)], work, runs, 0)
    d_runs = max(10, runs)
    seed = a.seed if a.seed is not None else random.randrange(1 << 32)
    for tool in ("chaos", "faultline"):
        print("detection:", tool, flush=True)
        # The same failure points for both tools.
        rng = random.Random(seed)
        # faultline exits 2 (aborted), chaos 1.
        res[("detect", tool)] = detection(cmds[("detect", tool)], env, work, health, 3.0,
                                          d_runs, rng)

    def ratio(x, y):
        return x / y if y else float("inf")

    rows = []
    v_c, v_f = res[("validate", "chaos")], res[("validate", "faultline")]
    r_c, r_f = res[("run", "chaos")], res[("run", "faultline")]
    d_c, d_f = res[("detect", "chaos")], res[("detect", "faultline")]
    r_d = res[("run-disk", "faultline")]

    def ms(r):
        return "%.1f ms (%.1f-%.1f)" % (r["wall_s"] * 1e3, r["wall_q1"] * 1e3, r["wall_q3"] * 1e3)

    def mib(r):
        return "%.1f MiB (%.1f-%.1f)" % (r["rss_kib"] / 1024, r["rss_min"] / 1024,
                                         r["rss_max"] / 1024)

    def secs(r):
        return "%.2f s (%.2f-%.2f)" % (r["stop_s"], r["q1"], r["q3"])

    rows.append(("validate: wall time", ms(v_c), ms(v_f),
                 "%.0fx faster" % ratio(v_c["wall_s"], v_f["wall_s"])))
    rows.append(("validate: peak RSS", mib(v_c), mib(v_f),
                 "%.1fx less" % ratio(v_c["rss_kib"], v_f["rss_kib"])))
    rows.append(("run (no configured waits): wall time", ms(r_c), ms(r_f),
                 "%.0fx faster" % ratio(r_c["wall_s"], r_f["wall_s"])))
    rows.append(("run, faultline state dir on disk", ms(r_c), ms(r_d),
                 "%.0fx faster" % ratio(r_c["wall_s"], r_d["wall_s"])))
    rows.append(("run: peak RSS", mib(r_c), mib(r_f),
                 "%.1fx less" % ratio(r_c["rss_kib"], r_f["rss_kib"])))
    rows.append(("detection: failure -> run stopped", secs(d_c), secs(d_f),
                 "%.1fx faster" % ratio(d_c["stop_s"], d_f["stop_s"])))


    w = [max(len(r[i]) for r in rows + [("measure", "chaos", "faultline", "ratio")]) for i in range(4)]
    line = lambda r: "  ".join(c.ljust(w[i]) for i, c in enumerate(r))
    print()
    print(line(("measure", "Chaos Toolkit", "faultline", "ratio")))
    for r in rows:
        print(line(r))

    chaos_ver = subprocess.run([a.chaos, "--no-version-check", "--version"], capture_output=True,
                               text=True).stdout.strip()
    fl_ver = subprocess.run([a.faultline, "--version"], capture_output=True, text=True).stdout.strip()
    lib_ver = subprocess.run([os.path.join(os.path.dirname(a.chaos), "python"), "-c",
                              "import chaoslib; print(chaoslib.__version__)"],
                             capture_output=True, text=True).stdout.strip()
    md = []
    md.append("# faultline vs Chaos Toolkit (measured)\n")
    md.append("Produced by `bench/ctk_compare.sh` on the same Chaos Toolkit JSON files for both tools.\n")
    md.append("| measure | Chaos Toolkit | faultline | ratio |")
    md.append("|---|---|---|---|")
    for r in rows:
        md.append("| %s | %s | %s | %s |" % r)
    md.append("")
    md.append("## Machine\n")
    md.append("- date: %s" % datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))
    md.append("- CPU: %s, nproc %d" % (cpu_model(), os.cpu_count() or 0))
    md.append("- kernel: %s" % platform.release())
    md.append("- Python %s; %s (chaostoolkit-lib %s); %s" % (platform.python_version(), chaos_ver,
                                                              lib_ver, fl_ver))
    md.append("")
    md.append("## Method\n")
    md.append("- Wall time is measured around spawn..exit of each command (under "
              "`/usr/bin/time`, the same small overhead for both); peak RSS is GNU time's "
              "`%%M` (maximum resident set size of the process). Each cell is the median with, "
              "in brackets, the middle half of the runs (first to third quartile; min-max for "
              "RSS): %d runs each for validate and run, %d for detection." % (runs, d_runs))
    md.append("- Target: `python3 -m http.server` on 127.0.0.1 serving `health.txt`; the probe "
              "is an http probe with `tolerance: 200`; the action is the process `true`.")
    md.append("- `chaos` runs with `--no-version-check` (otherwise it asks the package index "
              "for a newer version on every start) and its default log file; faultline runs "
              "with `-q` and writes a Chaos Toolkit journal, like `chaos run`.")
    md.append("- faultline's state dir (its undo journal is fsynced before anything runs) is "
              "on a tmpfs, like its default `/run/faultline` on standard hosts (here: `%s`); "
              "the row \"state dir on disk\" shows the same run with the state dir on the "
              "work disk, where each fsync costs milliseconds." % env["FAULTLINE_STATE_DIR"])
    md.append("- The machine is shared: other builds ran at the same time, so absolute numbers "
              "are noisy. The tools take turns run by run (Chaos Toolkit, faultline, "
              "faultline with its state dir on disk, and again), so a change in load hits both "
              "alike and the ratios stay fair; detection runs one tool after the other, at the "
              "same random failure points.")
    md.append("- Detection: the method is 60 process actions of `sleep 0.5`; 3 s plus a random "
              "0-1 s after the start (the same points for both tools, seed %d: rerun with "
              "`--seed`) the script deletes `health.txt` (the server answers 404) and measures "
              "until the process exits. Chaos Toolkit stops at the next activity boundary after a failed "
              "check; faultline aborts at the first failed sample, kills the running action and "
              "rolls back." % seed)
    md.append("")
    md.append("Commands:\n")
    md.append("```")
    for (what, tool), argv in cmds.items():
        md.append("%s (%s): %s" % (what, tool, " ".join(os.path.basename(x) if i == 0 else x
                                                        for i, x in enumerate(argv))))
    md.append("```")
    md.append("")
    md.append("Raw results:\n")
    md.append("```json")
    raw = {"%s/%s" % k: v for k, v in res.items()}
    raw["detection_seed"] = seed
    md.append(json.dumps(raw, indent=2))
    md.append("```")
    with open(a.out, "w") as f:
        f.write("\n".join(md) + "\n")
    if tmpfs.startswith("/dev/shm/"):
        shutil.rmtree(tmpfs, ignore_errors=True)
    print("\nwrote", a.out)


if __name__ == "__main__":
    sys.exit(main())
