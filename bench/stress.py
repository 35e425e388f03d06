#!/usr/bin/env python3
"""kleak under load: allocation traffic on every CPU while kleak reports
every second, each report checked as it arrives. Not a CI test: a run for
minutes whose figures go into docs/reliability.md.

usage (root; other BPF users of the machine take the same lock):
  flock /run/lock/kleak-bpf.lock bench/stress.py [SECONDS] [-- KLEAK_ARGS...]
  (KLEAK_STRESS_SAVE=FILE keeps the final JSON report)

Load, per CPU: kleak-bench-work msg (msgsnd+msgrcv: kmalloc/kfree), proc
(/proc/stat open/read/close: kmem_cache and kmalloc), a fork+exec loop and
a file write/read/unlink loop.

Checked after every report (the counters are cumulative, see docs/usage.md
"Reading a report"):
  seen      allocs_seen = failed + filtered + recorded + live_map_full
            + live_map_errors (each allocation event ends in exactly one of
            them); off by at most a few events per CPU in flight while the
            per-CPU counters are copied
  live      live.allocations = recorded - frees_matched - missed_frees
            (a record leaves the map by a matched free, or is dropped or
            overwritten as a missed free); off by at most the map changes
            while kleak reads the map: events/s x read time (from -v)
  free      frees_matched + free_errors <= frees_seen
  monotone  every counter only grows; the live map never exceeds capacity
  complete  no event was lost unless the live map filled (counted)
  rss       VmRSS from /proc/PID/status, min/max over the run
After SECONDS the load stops; three reports later kleak gets SIGINT, must
print a final report and exit 0, and no kleak_* program may stay loaded.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BUILD = os.environ.get("KLEAK_BUILD_DIR", os.path.join(HERE, "..", "build"))
KLEAK = os.path.join(BUILD, "kleak")
WORK = os.path.join(BUILD, "bench", "kleak-bench-work")


def status_kb(pid, field):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def parse_args(default_seconds):
    """SECONDS and the kleak arguments after `--`, from the command line."""
    args = sys.argv[1:]
    extra = []
    if "--" in args:
        extra = args[args.index("--") + 1:]
        args = args[:args.index("--")]
    return (float(args[0]) if args else default_seconds), extra


def require_built(*files):
    for f in files:
        if not os.access(f, os.X_OK):
            sys.exit(f"missing {f}: build first (scripts/build.sh)")


def watch_stderr(kleak, chk):
    """Reads kleak's -v stderr on a thread: each report's read time goes to
    chk.read_ms, error and warning lines to the returned list."""
    errors = []

    def read_stderr():
        for line in kleak.stderr:
            m = re.search(r"report #(\d+): .* \(read\+group ([0-9.]+)", line)
            if m:
                chk.read_ms[int(m.group(1))] = float(m.group(2))
            elif "error" in line or "warning" in line:
                errors.append(line.rstrip())

    t = threading.Thread(target=read_stderr, daemon=True)
    t.start()
    return errors, t


def checked_reports(kleak, chk):
    """kleak's JSON reports (one a line on stdout) as they arrive, each
    checked by chk first."""
    for line in kleak.stdout:
        j = json.loads(line)
        chk.check(j, kleak.pid)
        yield j


def kleak_programs():
    out = subprocess.run(["bpftool", "prog", "show"], capture_output=True, text=True).stdout
    return re.findall(r"name (kleak_\w+)", out)


def start_load(tmp):
    """One of each loop per CPU, in its own process group. Each loop ends
    at its next round once tmp/stop exists: a killed msg workload would
    leave its System V queue behind."""
    go = f"while [ ! -e {tmp}/stop ]; do"
    loops = {
        "msg": f"{go} {WORK} msg 20000 >/dev/null; done",
        "proc": f"{go} {WORK} proc 5000 >/dev/null; done",
        "fork": f"{go} /bin/true; done",
        "file": f"{go} dd if=/dev/zero of={tmp}/f$$ bs=64k count=32 status=none; "
                f"cat {tmp}/f$$ >/dev/null; rm -f {tmp}/f$$; done",
    }
    procs = []
    for _ in range(os.cpu_count() or 1):
        for script in loops.values():
            procs.append(subprocess.Popen(["/bin/sh", "-c", script], start_new_session=True))
    return procs


def stop_load(procs, tmp):
    open(os.path.join(tmp, "stop"), "w").close()
    for p in procs:
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
            print(f"load loop {p.pid} killed: a System V queue may be left (ipcs -q)", file=sys.stderr)


class Checker:
    def __init__(self, ncpu):
        self.ncpu = ncpu
        self.read_ms = {}  # report seq -> ms kleak spent reading the map (from -v)
        self.prev = None
        self.failures = []
        self.reports = 0
        self.rss = []
        self.rates = []
        self.seen_off = []
        self.live_off = []  # (seq, residual, bound)
        self.hwm = None

    def fail(self, seq, what):
        self.failures.append(f"report #{seq}: {what}")
        print(f"FAIL report #{seq}: {what}", flush=True)

    def check(self, j, kpid):
        self.reports += 1
        seq = j["seq"]
        c = j["counters"]
        rss, hwm = status_kb(kpid, "VmRSS"), status_kb(kpid, "VmHWM")
        if rss is not None:
            self.rss.append(rss)
            self.hwm = hwm
        missed_filtered = c["missed_frees"] - c["allocs_replaced"]
        outcomes = (c["allocs_failed"] + c["allocs_filtered"] + c["allocs_recorded"] + c["live_map_full"]
                    + c["live_map_errors"])
        seen_off = c["allocs_seen"] - outcomes
        self.seen_off.append(seen_off)
        # In flight while the per-CPU values are copied (seen is copied
        # first): a few per CPU either way (programs nest in interrupts).
        if abs(seen_off) > 4 * self.ncpu:
            self.fail(seq, f"allocs_seen {c['allocs_seen']} vs outcomes {outcomes} (off by {seen_off})")
        if missed_filtered < 0:
            self.fail(seq, f"missed_frees {c['missed_frees']} < allocs_replaced {c['allocs_replaced']}")
        if c["frees_matched"] + c["free_errors"] > c["frees_seen"]:
            self.fail(seq, "more frees matched than seen")
        live = j["live"]["allocations"]
        capacity = j["live"]["capacity"]
        expect = c["allocs_recorded"] - c["frees_matched"] - c["missed_frees"]
        residual = live - expect
        if self.prev is not None:
            p = self.prev
            for k, v in c.items():
                if isinstance(v, int) and v < p["counters"][k]:
                    self.fail(seq, f"counter {k} went down ({p['counters'][k]} -> {v})")
            dt = j["elapsed_s"] - p["elapsed_s"]
            events = (c["allocs_seen"] - p["counters"]["allocs_seen"]) + (c["frees_seen"] - p["counters"]["frees_seen"])
            rate = events / dt if dt > 0 else 0
            self.rates.append(rate)
            deadline = time.monotonic() + 0.5  # the -v line comes on stderr, maybe late
            while seq not in self.read_ms and time.monotonic() < deadline:
                time.sleep(0.01)
            read_ms = self.read_ms.get(seq)
            if read_ms is not None:
                # Every event during the read moves the map by at most one
                # entry; 2x and 256 for the time between the counter read and
                # the map read and for rate swings inside one second.
                bound = 2 * rate * read_ms / 1000 + 256
                self.live_off.append((seq, residual, bound))
                # The batched read is not atomic: a record freed after its
                # bucket was read and one inserted into a bucket not read
                # yet are both counted, so a full map can read a little
                # above its capacity.
                if live > capacity + bound:
                    self.fail(seq, f"live {live} above capacity {capacity} + read skew {bound:.0f}")
                if abs(residual) > bound:
                    self.fail(seq, f"live {live} vs recorded-matched-missed {expect} (off by {residual}, "
                                   f"bound {bound:.0f} at {rate:.0f} events/s x {read_ms} ms)")
        if not j["complete"] and c["live_map_full"] == 0:
            self.fail(seq, "incomplete without a full map: " + json.dumps(c))
        self.prev = j


def main():
    seconds, extra = parse_args(300)
    require_built(KLEAK, WORK)
    if kleak_programs():
        sys.exit("kleak programs already loaded: run under flock /run/lock/kleak-bpf.lock")
    ncpu = os.cpu_count() or 1
    with open("/proc/loadavg") as f:
        load_before = f.read().split()[:3]

    tmp = tempfile.mkdtemp(prefix="kleak-stress-")
    load = start_load(tmp)
    time.sleep(1)  # let the loops reach steady state
    kleak = subprocess.Popen([KLEAK, "1", "-o", "0", "--format", "json", "-q", "-v"] + extra,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    chk = Checker(ncpu)
    errors, t = watch_stderr(kleak, chk)
    start = time.monotonic()
    last = None
    final = None
    quiet_from = None
    try:
        for j in checked_reports(kleak, chk):
            last = j
            if j["final"]:
                final = j
                break
            if chk.reports % 30 == 0:
                c = j["counters"]
                print(f"[{time.monotonic() - start:5.0f}s] report #{j['seq']}: live {j['live']['allocations']}, "
                      f"allocs seen {c['allocs_seen']}, frees seen {c['frees_seen']}, map-full {c['live_map_full']}, "
                      f"RSS {chk.rss[-1] / 1024:.1f} MiB", flush=True)
            if quiet_from is None and time.monotonic() - start >= seconds:
                # Load off, then a few quiet reports: the identities must
                # still hold, tightly, after minutes of load (no drift).
                stop_load(load, tmp)
                quiet_from = j["seq"]
            elif quiet_from is not None and j["seq"] >= quiet_from + 3:
                kleak.send_signal(signal.SIGINT)
    finally:
        stop_load(load, tmp)
        shutil.rmtree(tmp, ignore_errors=True)
    if last and os.environ.get("KLEAK_STRESS_SAVE"):  # the final report, to see what stays live
        with open(os.environ["KLEAK_STRESS_SAVE"], "w") as f:
            json.dump(last, f)
    rc = kleak.wait(timeout=60)
    t.join(5)
    with open("/proc/loadavg") as f:
        load_after = f.read().split()[:3]
    time.sleep(1)  # program teardown is deferred by RCU
    left = kleak_programs()

    c = last["counters"] if last else {}
    ok = not chk.failures and rc == 0 and final is not None and not left and not errors
    rates = sorted(chk.rates)
    print()
    print(f"kleak under load: {last['elapsed_s'] if last else 0:.0f} s, {chk.reports} reports, "
          f"{ncpu} CPUs x 4 load loops (msg, proc, fork, file)")
    print(f"  loadavg before {' '.join(load_before)}, after {' '.join(load_after)} (other users of the machine included)")
    if rates:
        print(f"  traced events/s (allocs+frees seen): median {rates[len(rates) // 2]:,.0f}, "
              f"min {rates[0]:,.0f}, max {rates[-1]:,.0f}")
    if c:
        print(f"  totals: allocs seen {c['allocs_seen']:,} recorded {c['allocs_recorded']:,} "
              f"filtered {c['allocs_filtered']:,} map-full {c['live_map_full']:,} map-errors {c['live_map_errors']:,}; "
              f"frees seen {c['frees_seen']:,} matched {c['frees_matched']:,} errors {c['free_errors']:,}; "
              f"missed frees {c['missed_frees']:,}; stack errors {c['stack_errors']}")
        print(f"  live at the end {last['live']['allocations']:,} of {last['live']['capacity']:,}; "
              f"complete {last['complete']}")
    if chk.rss:
        print(f"  kleak RSS: min {min(chk.rss) / 1024:.1f} MiB, max {max(chk.rss) / 1024:.1f} MiB, "
              f"last {chk.rss[-1] / 1024:.1f} MiB; peak (VmHWM) {chk.hwm / 1024:.1f} MiB")
    if chk.seen_off:
        print(f"  seen = outcomes: off by {min(chk.seen_off)}..{max(chk.seen_off)} (in flight)")
    if chk.live_off and quiet_from is not None:
        quiet = [(r, b) for seq, r, b in chk.live_off if seq > quiet_from + 1]
        if quiet:
            print(f"  after the load: residual {', '.join(str(r) for r, _ in quiet)} "
                  f"(bounds {', '.join(f'{b:.0f}' for _, b in quiet)})")
    if chk.live_off:
        worst = max(((r, b) for _, r, b in chk.live_off), key=lambda rb: abs(rb[0]) / rb[1])
        res = [r for _, r, _ in chk.live_off]
        print(f"  live = recorded - matched - missed: residual {min(res)}..{max(res)}, "
              f"worst {worst[0]} against a bound of {worst[1]:.0f} ({len(chk.live_off)} reports checked)")
    print(f"  exit status {rc}, final report {'yes' if final else 'NO'}, programs left {left or 'none'}")
    for e in errors[:5]:
        print(f"  kleak stderr: {e}")
    print(f"  checks: {'all held' if ok else f'{len(chk.failures)} failed'}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
