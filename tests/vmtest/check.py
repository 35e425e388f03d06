#!/usr/bin/env python3
"""Judges one scripts/vmtest guest run from its serial console log.

usage: check.py CONSOLE_LOG READS COMM

Leaking case: exactly one kleak stack runs through the leaky module, in an
open function, holding READS allocations of 4096 bytes made by COMM.
Fixed case: kleak saw the reads (at least READS allocations recorded and
frees matched) and no stack runs through the leaky module.
CI mode (kleak --ci running the reads itself): on the leaking file it exits 1
with READS allocations of 4096 bytes at the [leaky] stack; on the fixed file
it exits 0.
Selftest: kleak selftest loads every family and pairs kmalloc, kmem_cache,
page, percpu and an RCU-deferred free; vmalloc pairs too, except on 6.1,
whose kernel has no vmalloc trace events (not covered).
Prints one line per finding; exit status 0 when every case passes, else 1.
"""
import json
import sys

MARK = "KLEAK-VMTEST: "
PAGE = 4096


def sections(log):
    """Returns ({case: json_text}, {case: stderr_text}, {case: exit_status}, saw_result)."""
    docs, errs, status, result = {}, {}, {}, False
    current = None
    buf = []
    for raw in log.splitlines():
        line = raw.replace("\r", "")
        at = line.find(MARK)
        if at >= 0:
            word = line[at + len(MARK):].split()
            if current and word and word[0].startswith("END-"):
                target = docs if word[0] == "END-JSON" else errs
                target[current] = "\n".join(buf)
                current = None
            elif word and word[0] in ("BEGIN-JSON", "BEGIN-STDERR") and len(word) > 1:
                current, buf = word[1], []
            elif word[:1] == ["RESULT"]:
                result = True
            elif len(word) >= 6 and word[1] == "case" and word[3:6] == ["kleak", "exit", "status"]:
                status[word[2].rstrip(":")] = word[6] if len(word) > 6 else "?"
            continue
        if current:
            buf.append(line)
    return docs, errs, status, result


def frame_text(f):
    name = f.get("symbol") or f.get("addr") or "?"
    off = f.get("offset")
    s = f"{name}+{off:#x}" if isinstance(off, int) else name
    return s + (f" [{f['module']}]" if f.get("module") else "")


def leaky_stacks(doc):
    return [s for s in doc.get("stacks", []) if any(f.get("module") == "leaky" for f in s.get("frames") or [])]


def load_case(name, docs, errs, status, problems, out):
    text = docs.get(name)
    err = [l for l in errs.get(name, "").splitlines() if l.strip()]
    st = status.get(name, "?")
    if st != "0" or not text or not text.strip():
        why = err[-1] if err else "no stderr"
        problems.append(f"{name}: kleak exit status {st} in the guest, no report: {why}")
        out.extend(f"{name}: guest stderr: {l}" for l in err[-40:])
        return None
    try:
        doc = json.loads(text.strip().splitlines()[-1])
    except json.JSONDecodeError as e:
        problems.append(f"{name}: kleak's output is not one JSON document: {e}")
        return None
    if not doc.get("final"):
        problems.append(f"{name}: the report is not the final one")
    if not doc.get("complete"):
        # Not a failure by itself: the checks below are exact, so a loss
        # that touched the module's allocations fails them anyway.
        c = doc.get("counters", {})
        out.append(f"{name}: note: report incomplete, live_map_full {c.get('live_map_full')} "
                   f"live_map_errors {c.get('live_map_errors')}")
    return doc


def check_leak(doc, reads, comm, problems, out):
    found = leaky_stacks(doc)
    if len(found) != 1:
        problems.append(f"leak: expected 1 stack through [leaky], found {len(found)}")
        if not found:
            return
    s = max(found, key=lambda s: s.get("bytes", 0))
    frames = s.get("frames") or []
    mine = [f for f in frames if f.get("module") == "leaky"]
    sizes = {z.get("bytes_alloc"): z.get("count") for z in s.get("sizes", [])}
    tasks = s.get("tasks", [])
    out.append(f"leak: stack rank {s.get('rank')} of {len(doc.get('stacks', []))}: {s.get('count')} allocations, "
               f"{s.get('bytes')} bytes, sizes {sizes}, tasks "
               + ", ".join(f"{t.get('comm')}/{t.get('tgid')}x{t.get('count')}" for t in tasks))
    out.append("leak: frames: " + " <- ".join(frame_text(f) for f in frames))
    if s.get("count") != reads:
        problems.append(f"leak: {s.get('count')} allocations at the [leaky] stack, expected {reads}")
    if s.get("bytes") != reads * PAGE or sizes != {PAGE: reads}:
        problems.append(f"leak: sizes {sizes} ({s.get('bytes')} bytes), expected {{{PAGE}: {reads}}}")
    if not any("open" in (f.get("symbol") or "") for f in mine):
        problems.append("leak: no [leaky] frame in an open function: " + ", ".join(frame_text(f) for f in mine))
    # One reading process: one task holding every allocation.
    if [(t.get("comm"), t.get("count")) for t in tasks] != [(comm, reads)]:
        problems.append(f"leak: expected one task {comm!r} holding all {reads} allocations")
    if s.get("rank") != 1:
        out.append(f"leak: note: the [leaky] stack is rank {s.get('rank')}, not the top stack")


def check_fixed(doc, reads, problems, out):
    c = doc.get("counters", {})
    out.append(f"fixed: {len(doc.get('stacks', []))} stacks outstanding, none through [leaky] expected; "
               f"allocs recorded {c.get('allocs_recorded')}, frees matched {c.get('frees_matched')}")
    for s in leaky_stacks(doc):
        problems.append(f"fixed: {s.get('count')} allocations still held at a [leaky] stack: "
                        + " <- ".join(frame_text(f) for f in s.get("frames") or []))
    # Without this, a kleak that traced nothing would pass.
    if (c.get("allocs_recorded") or 0) < reads or (c.get("frees_matched") or 0) < reads:
        problems.append(f"fixed: kleak did not see the {reads} open/close pairs (counters {c})")


def check_stack_cache(name, doc, problems, out):
    """Both cases run with --stack-cache verify: the cache must have been
    used, and every stack it gave must be the one the walk gave."""
    sc = doc.get("counters", {}).get("stack_cache", {})
    out.append(f"{name}: stack cache: hits {sc.get('hits')}, cached {sc.get('cached')}, "
               f"uncacheable {sc.get('uncacheable')}, verify mismatches {sc.get('verify_mismatches')}")
    if not sc.get("hits"):
        problems.append(f"{name}: the stack cache never hit ({sc})")
    if sc.get("verify_mismatches") != 0:
        problems.append(f"{name}: {sc.get('verify_mismatches')} cached stacks differed from the walk")


def check_ci(docs, status, reads, problems, out):
    for name, want in (("ci-leak", "1"), ("ci-fixed", "0")):
        st = status.get(name, "?")
        text = (docs.get(name) or "").strip()
        doc = None
        if text:
            try:
                doc = json.loads(text.splitlines()[-1])
            except json.JSONDecodeError as e:
                problems.append(f"{name}: output is not JSON: {e}")
        verdict = (doc or {}).get("ci", {})
        out.append(f"{name}: kleak --ci exit status {st}: {verdict.get('summary')}")
        if st != want:
            problems.append(f"{name}: kleak --ci exited {st}, expected {want}")
        if not doc:
            continue
        mine = leaky_stacks(doc)
        if name == "ci-leak":
            if [(s.get("count"), s.get("bytes")) for s in mine] != [(reads, reads * PAGE)]:
                problems.append(f"{name}: expected one [leaky] stack with {reads} x {PAGE} bytes, found "
                                + str([(s.get("count"), s.get("bytes")) for s in mine]))
            # --peek: the leaked seq_file buffers hold the module's
            # schedstat-like text, read in place without a vmcore.
            peek = (mine[0].get("peek") or {}) if mine else {}
            groups = peek.get("groups") or []
            samples = peek.get("samples") or []
            out.append(f"{name}: peek: {len(samples)} samples, groups "
                       + ", ".join(f"{g.get('count')}x {g.get('shape')!r}" for g in groups))
            if not groups or groups[0].get("count") != len(samples) or not samples \
                    or not (groups[0].get("shape") or "").startswith("version #\ntimestamp #"):
                problems.append(f"{name}: --peek did not show the schedstat-like text in every sample: {groups}")
        elif mine:
            problems.append(f"{name}: a [leaky] stack was judged a leak on the fixed file")


# What kleak selftest must say per family. vmalloc's trace events came
# after v6.1: "not_covered" is the honest answer there, "ok" on later kernels.
SELFTEST_MUST_PAIR = ("kmalloc", "kmem_cache", "page", "percpu", "rcu")


def check_selftest(docs, status, kernel, problems, out):
    st = status.get("selftest", "?")
    text = (docs.get("selftest") or "").strip()
    try:
        doc = json.loads(text.splitlines()[-1]) if text else None
    except json.JSONDecodeError as e:
        problems.append(f"selftest: output is not JSON: {e}")
        return
    if not doc:
        problems.append(f"selftest: no output (exit status {st})")
        return
    rows = {r.get("family"): r for r in doc.get("results", [])}
    out.append("selftest: exit status " + st + ": " + ", ".join(
        f"{f} {r.get('result')}" + (f" ({r.get('detail')})" if r.get("detail") else "") for f, r in rows.items()))
    if st != "0" or doc.get("passed") is not True:
        problems.append(f"selftest: exit status {st}, passed {doc.get('passed')}")
    for fam in SELFTEST_MUST_PAIR:
        if (rows.get(fam) or {}).get("result") != "ok":
            problems.append(f"selftest: {fam} did not pair: {rows.get(fam)}")
    want_vmalloc = "not_covered" if (kernel or "").startswith("6.1.") else "ok"
    if (rows.get("vmalloc") or {}).get("result") != want_vmalloc:
        problems.append(f"selftest: vmalloc is {rows.get('vmalloc')}, expected {want_vmalloc} on {kernel}")


def main():
    if len(sys.argv) != 4:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    with open(sys.argv[1], errors="replace") as f:
        log = f.read()
    reads, comm = int(sys.argv[2]), sys.argv[3]
    docs, errs, status, result = sections(log)
    problems, out = [], []
    if not result:
        problems.append("the guest never printed the RESULT marker (crash, panic or timeout)")
    leak = load_case("leak", docs, errs, status, problems, out)
    if leak:
        out.append(f"kernel {leak.get('kernel')}, attached {', '.join(leak.get('attached', []))}"
                   + (f", missing {', '.join(leak['missing'])}" if leak.get("missing") else ""))
        check_leak(leak, reads, comm, problems, out)
        check_stack_cache("leak", leak, problems, out)
    fixed = load_case("fixed", docs, errs, status, problems, out)
    if fixed:
        check_fixed(fixed, reads, problems, out)
        check_stack_cache("fixed", fixed, problems, out)
    check_ci(docs, status, reads, problems, out)
    check_selftest(docs, status, (leak or {}).get("kernel"), problems, out)
    for line in out:
        print(line)
    for p in problems:
        print(f"FAIL: {p}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
