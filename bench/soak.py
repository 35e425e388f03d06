#!/usr/bin/env python3
"""kleak for an hour (or SECONDS) at a steady allocation rate: RSS must stay
flat, the stack store must not fill with dead stacks, the counters must stay
consistent, and a slow leak must stay visible with its full stack. Not a CI
test; its output goes into docs/performance.md.

usage (root):
  bench/soak.py [SECONDS] [-- KLEAK_ARGS...]     (default 3600 s)

It does not take /run/lock/kleak-bpf.lock: an hour is too long to keep other
BPF users of the machine waiting; the tests leave out kleak programs loaded
before they started (tests/support/env.cpp).

Load: per CPU, kleak-bench-work msg and proc in rounds with pauses (a steady
~10-20k events/s of churn that frees everything), a fork+exec every 50 ms,
and one slow leak: kleak-msghold dripping one 4 KiB System V message per
second, held until the end. kleak reports every 10 s (-i 10); every report
is checked like bench/stress.py checks them (counter identities), and:
  rss      VmRSS over the run. It grows while the growth history fills (at
           most 4096 stacks x the last 120 reports, 20 min at -i 10), so
           "flat" compares the 10 reports after that window filled with the
           last 10% (within 2 MiB); shorter runs compare first/last 10%
  stacks   the stack store's fill (stacks_stored) and what was reclaimed;
           stack ENOMEM (store full) must stay 0
  leak     the drip's stack (load_msg/do_msgsnd) holds as many messages as
           were dripped, within one, in the last report
"""
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from stress import (KLEAK, WORK, BUILD, Checker, checked_reports, parse_args, require_built, status_kb,  # noqa: E402
                    stop_load, watch_stderr)

MSGHOLD = os.path.join(BUILD, "tests", "kleak-msghold")


def start_load(tmp):
    go = f"while [ ! -e {tmp}/stop ]; do"
    loops = [
        f"{go} {WORK} msg 2000 >/dev/null; sleep 0.2; done",
        f"{go} {WORK} proc 500 >/dev/null; sleep 0.2; done",
        f"{go} /bin/true; sleep 0.05; done",
    ]
    procs = []
    for _ in range(os.cpu_count() or 1):
        for script in loops:
            procs.append(subprocess.Popen(["/bin/sh", "-c", script], start_new_session=True))
    return procs


def leak_count(report, tgid):
    n = 0
    for s in report["stacks"]:
        if not any(f.get("symbol") == "load_msg" for f in s["frames"]):
            continue
        for t in s["tasks"]:
            if t["tgid"] == tgid:
                n += t["count"]
    return n


def main():
    seconds, extra = parse_args(3600)
    require_built(KLEAK, WORK, MSGHOLD)
    tmp = tempfile.mkdtemp(prefix="kleak-soak-")
    load = start_load(tmp)
    holder = subprocess.Popen([MSGHOLD, "100000"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    holder.stdout.readline()  # ready PID
    kleak = subprocess.Popen([KLEAK, "10", "-o", "0", "--format", "json", "-q", "-v", "-T", "30", "--sort", "bytes"]
                             + extra, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    chk = Checker(os.cpu_count() or 1)
    errors, _ = watch_stderr(kleak, chk)
    time.sleep(1)
    holder.stdin.write("drip 1000\n")
    holder.stdin.flush()
    drip_start = time.monotonic()
    start = time.monotonic()
    series = []  # (elapsed_s, rss_kb, stacks_stored, stacks_reclaimed, live, stack_enomem)
    last = None
    dripped = None
    try:
        for j in checked_reports(kleak, chk):
            last = j
            if j["final"]:
                break
            c = j["counters"]
            series.append((j["elapsed_s"], status_kb(kleak.pid, "VmRSS") or 0, j["live"].get("stacks_stored", 0),
                           j["live"].get("stacks_reclaimed", 0), j["live"]["allocations"],
                           c["stack_errors"]["ENOMEM"]))
            if len(series) % 30 == 0:
                e = series[-1]
                print(f"[{time.monotonic() - start:5.0f}s] live {e[4]:,}, RSS {e[1] / 1024:.1f} MiB, stack store "
                      f"{e[2]:,} (reclaimed {e[3]:,}), leak held {leak_count(j, holder.pid)}", flush=True)
            if time.monotonic() - start >= seconds and dripped is None:
                holder.stdin.write("stop\n")  # any line ends the drip
                holder.stdin.flush()
                m = re.match(r"dripped (\d+)", holder.stdout.readline())
                dripped = int(m.group(1)) if m else -1
                drip_s = time.monotonic() - drip_start
                final_seq = j["seq"] + 2  # two more reports: every dripped message old enough
            elif dripped is not None and j["seq"] == final_seq:
                kleak.send_signal(signal.SIGINT)
    finally:
        stop_load(load, tmp)
        shutil.rmtree(tmp, ignore_errors=True)
    rc = kleak.wait(timeout=60)
    held = leak_count(last, holder.pid) if last else 0
    holder.stdin.close()  # EOF: msghold removes its queues
    holder.wait(timeout=30)

    n = len(series)
    tenth = max(1, n // 10)
    window = 120  # GrowthTracker's points per stack
    base = series[window:window + 10] if n >= 2 * window else series[:tenth]
    rss_first = sum(s[1] for s in base) / len(base)
    rss_last = sum(s[1] for s in series[-tenth:]) / tenth
    stored = [s[2] for s in series]
    enomem = series[-1][5] if series else 0
    cap = last["live"]["stack_capacity"] if last else 0
    flat = abs(rss_last - rss_first) <= 2048
    leak_ok = dripped is not None and dripped > 0 and abs(held - dripped) <= 1
    ok = not chk.failures and rc == 0 and flat and enomem == 0 and leak_ok and not errors
    c = last["counters"] if last else {}
    print()
    print(f"kleak soak: {last['elapsed_s'] if last else 0:.0f} s, {n} reports (-i 10), kleak args {extra or 'none'}")
    rates = sorted(chk.rates)
    if rates:
        print(f"  traced events/s: median {rates[len(rates) // 2]:,.0f}, min {rates[0]:,.0f}, max {rates[-1]:,.0f}")
    if c:
        print(f"  totals: allocs seen {c['allocs_seen']:,} recorded {c['allocs_recorded']:,}; frees seen "
              f"{c['frees_seen']:,} matched {c['frees_matched']:,}; missed frees {c['missed_frees']:,}; "
              f"map-full {c['live_map_full']:,}; stack errors {c['stack_errors']}")
    print(f"  RSS: {'after the growth window filled' if n >= 2 * window else 'first 10% of reports'} "
          f"{rss_first / 1024:.1f} MiB, last 10% {rss_last / 1024:.1f} MiB, "
          f"min {min(s[1] for s in series) / 1024:.1f}, max {max(s[1] for s in series) / 1024:.1f} MiB "
          f"-> {'flat' if flat else 'NOT flat'}")
    print(f"  stack store: capacity {cap:,}; stored max {max(stored):,}, last {stored[-1]:,}; reclaimed "
          f"{series[-1][3]:,}; stack ENOMEM {enomem}")
    print(f"  live allocations: first {series[0][4]:,}, max {max(s[4] for s in series):,}, last {series[-1][4]:,}")
    if chk.live_off:
        res = [r for _, r, _ in chk.live_off]
        print(f"  live = recorded - matched - missed: residual {min(res)}..{max(res)} over {len(res)} reports")
    print(f"  slow leak: dripped {dripped} messages in {drip_s:.0f} s; the load_msg stack holds {held} "
          f"-> {'found' if leak_ok else 'NOT found'}")
    print(f"  exit status {rc}; checks: {'all held' if ok else 'FAILED: ' + '; '.join(chk.failures[:3] + errors[:3])}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
