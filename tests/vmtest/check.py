#!/usr/bin/env python3
"""Judges one scripts/vmtest guest run from its serial console log.

usage: check.py CONSOLE_LOG READS COMM [--ko LEAKY_KO] [--vmlinux FILE] [--summary FILE [KEY=VALUE...]]

Leaking case, in each of kleak's stack modes (default: exact stacks with
the stack cache on; --stack-cache verify; --low-overhead, sampled stacks):
exactly one kleak stack runs through the leaky module, in an open
function, holding READS allocations of 4096 bytes made by COMM. In the
sampled mode the stack's count and bytes are estimates shared out from the
call site's exact totals: with one stack at that call site both must still
be exact, and so must the call site's totals.
Fixed case, in each mode: kleak saw the reads (at least READS allocations
recorded and frees matched) and no stack runs through the leaky module.
Stack cache (default and verify modes): used (hits), and in verify mode no
reused stack differed from the walk.
CI mode (kleak --ci running the reads itself): on the leaking file it exits 1
with READS allocations of 4096 bytes at the [leaky] stack; on the fixed file
it exits 0.
Late module (leaky loaded after kleak attached, unloaded before its
report): the leak is named leaky_open [leaky, unloaded] with the exact
count; with --ko (the leaky.ko the guest loaded, DWARF and all) every
[leaky] frame's source line and inlined functions must match
`addr2line -f -i` on that file, and leaky_open's line must be the
kmalloc() of tests/kmod/leaky.c. With --vmlinux (the DWARF of the guest's
kernel, which the guest had at /usr/lib/debug/boot/ for that case), the
core kernel's frames of that stack must have lines too, each matching
`addr2line -f -i` on that file.
Selftest: kleak selftest pairs every family; kleak selftest --loads loads
every BPF object in every mode.

Gaps: nothing is expected to be missing on a given kernel version. A part
kleak dropped, a family selftest did not cover, a mode kleak refused, is a
gap (printed with its reason, not a failure) only when the guest confirms
the kernel lacks what it needs: a tracepoint absent from the guest's
tracefs (the EVENTS lines of tests/vmtest/init), or a part kleak selftest
--loads lists as a gap (the kernel lacks a helper it needs, probed in the
guest). Anything else kleak dropped or refused is a failure.

--summary FILE: also writes one JSON line (the verdict, what was attached,
the gaps and their reasons, per-case guest timings, and the KEY=VALUE pairs
given, numbers as numbers) for a docs/kernels.md matrix.
Prints one line per finding; exit status 0 when every case passes, else 1.
"""
import json
import os
import re
import subprocess
import sys

LEAKY_C = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "kmod", "leaky.c")

MARK = "KLEAK-VMTEST: "
PAGE = 4096
# mode -> suffix of the guest's case names (tests/vmtest/init)
MODES = (("default", ""), ("verify", "-verify"), ("low_overhead", "-lo"))
NO_TRACEPOINT = re.compile(r"this kernel has no (\S+) tracepoint")
BY_NAME = re.compile(r"(\S+) was asked for by name, but (.*)")


class Log:
    """What the guest printed: per case its JSON, stderr and exit status,
    the trace events it has, when each case started and ended."""

    def __init__(self, text):
        self.docs, self.errs, self.status = {}, {}, {}
        self.events = {}
        self.times = {}  # case -> [start, end] guest uptime
        self.first_s = None
        self.result = False
        current, buf = None, []
        for raw in text.splitlines():
            line = raw.replace("\r", "")
            at = line.find(MARK)
            if at < 0:
                if current:
                    buf.append(line)
                continue
            word = line[at + len(MARK):].split()
            if current and word and word[0].startswith("END-"):
                (self.docs if word[0] == "END-JSON" else self.errs)[current] = "\n".join(buf)
                current = None
            elif word[:1] in (["BEGIN-JSON"], ["BEGIN-STDERR"]) and len(word) > 1:
                current, buf = word[1], []
            elif word[:1] == ["RESULT"]:
                self.result = True
            elif word[:1] == ["EVENTS"] and len(word) > 1:
                self.events[word[1]] = set(word[2:])
            elif word and word[0].startswith("[") and word[0].endswith("s]"):
                self._timed(word)

    def _timed(self, word):
        try:
            t = float(word[0][1:-2])
        except ValueError:
            return
        if self.first_s is None:
            self.first_s = t
        if len(word) > 2 and word[1] == "case":
            name = word[2].rstrip(":")
            span = self.times.setdefault(name, [t, t])
            span[1] = t
            if word[3:6] == ["kleak", "exit", "status"]:
                self.status[name] = word[6] if len(word) > 6 else "?"

    def json(self, name):
        """(doc, None) or (None, why)."""
        text = (self.docs.get(name) or "").strip()
        if not text:
            return None, "no output"
        try:
            return json.loads(text.splitlines()[-1]), None
        except json.JSONDecodeError as e:
            return None, f"output is not one JSON document: {e}"

    def stderr(self, name):
        return [l for l in self.errs.get(name, "").splitlines() if l.strip()]

    def has_tracepoint(self, label):
        """True/False from the guest's tracefs, None when it cannot tell."""
        group, _, event = label.partition("/")
        if not self.events.get("kmem"):
            return None  # no tracefs in the guest: no ground truth
        return event in self.events.get(group, set())


class Judge:
    def __init__(self, log, reads, comm, ko=None, vmlinux=None):
        self.log, self.reads, self.comm, self.ko, self.vmlinux = log, reads, comm, ko, vmlinux
        self.problems, self.out = [], []
        self.gaps = {}  # what the kernel lacks -> {reason, seen_in}, printed once
        self.shown_stderr = set()
        self.not_run = set()  # cases kleak refused because the kernel lacks what they need
        self.kernel_gaps = {}  # part -> reason, from kleak selftest --loads
        self.results = {"leak": {}, "fixed": {}, "ci": {}}

    def fail(self, text):
        self.problems.append(one_line(text))

    def gap(self, what, reason, where):
        g = self.gaps.setdefault(what, {"reason": reason, "seen_in": []})
        if where not in g["seen_in"]:
            g["seen_in"].append(where)

    # --- what the kernel lacks, by the guest's own account -----------------
    def read_loads(self):
        doc, why = self.log.json("loads")
        st = self.log.status.get("loads", "?")
        summary = {"exit": st}
        if not doc:
            self.fail(f"loads: kleak selftest --loads gave {why} (exit status {st})")
            self.out.extend(f"loads: guest stderr: {l}" for l in self.log.stderr("loads")[-20:])
            return summary
        cases = doc.get("cases", [])
        failed = [c for c in cases if not c.get("passed")]
        for c in cases:
            for g in c.get("gaps") or []:
                self.kernel_gaps.setdefault(g.get("part"), g.get("reason"))
        self.out.append(f"loads: exit status {st}: {len(cases)} cases, {len(failed)} failed, kernel lacks: "
                        + (", ".join(f"{p} ({r})" for p, r in self.kernel_gaps.items()) or "nothing"))
        # One line per distinct refusal, naming the cases it hit.
        by_failure = {}
        for c in failed:
            text = one_line(re.sub(r" \((kleak[_a-z]*\.bpf\.c: [^)]*)\)", "", c.get("failure") or "?"))
            by_failure.setdefault(text, []).append(c.get("case"))
        for text, names in by_failure.items():
            self.fail(f"loads: {len(names)} of {len(cases)} cases refused: {text}; cases: " + "; ".join(names))
        summary["failures"] = by_failure
        for part, reason in self.kernel_gaps.items():
            why = self.lacked(part, reason)
            if why:
                self.gap(part, f"dropped: {reason} (confirmed: {why})", "loads")
            else:
                self.fail(f"loads: says the kernel lacks what {part} needs, the guest's tracefs disagrees: {reason}")
        if st != ("1" if failed else "0"):
            self.fail(f"loads: exit status {st} with {len(failed)} failed cases")
        summary.update(passed=not failed, cases=len(cases), failed=len(failed), gaps=dict(self.kernel_gaps))
        return summary

    def lacked(self, part, reason):
        """Why the kernel lacks what PART needs, or None when the guest does
        not confirm it does. A missing tracepoint is checked against the
        guest's tracefs, whoever claims it; anything else (a helper the
        kernel lacks) must be a gap kleak selftest --loads found."""
        loads = self.kernel_gaps.get(part)
        for text in (reason, loads):
            m = NO_TRACEPOINT.search(text or "")
            if m:
                has = self.log.has_tracepoint(m.group(1))
                return f"the guest's tracefs has no {m.group(1)}" if has is False else None
        return f"kleak selftest --loads: {loads}" if loads else None

    def check_dropped(self, name, doc):
        """Every part dropped and every tracepoint missing is a gap the guest
        confirms, or a failure."""
        for d in doc.get("degraded") or []:
            part, reason = d.get("part"), d.get("reason")
            why = self.lacked(part, reason)
            if why:
                self.gap(part, f"dropped: {reason} (confirmed: {why})", name)
            else:
                self.fail(f"{name}: kleak dropped {part} though the guest does not say the kernel lacks it: {reason}")
        for label in doc.get("missing") or []:
            has = self.log.has_tracepoint(label)
            if has is False:
                self.gap(label, f"not traced: this kernel has no {label} tracepoint (confirmed: not in the guest's tracefs)", name)
            else:
                self.fail(f"{name}: kleak says {label} is missing, but the guest's tracefs "
                          + ("has it" if has else "cannot be read"))

    # --- the cases --------------------------------------------------------
    def load_case(self, name):
        """The case's report, or None (and why it is a gap or a failure)."""
        st = self.log.status.get(name, "?")
        err = self.log.stderr(name)
        doc, why = self.log.json(name)
        if st == "0" and doc:
            if not doc.get("final"):
                self.fail(f"{name}: the report is not the final one")
            if not doc.get("complete"):
                # Not a failure by itself: the checks below are exact, so a
                # loss that touched the module's allocations fails them anyway.
                c = doc.get("counters", {})
                self.out.append(f"{name}: note: report incomplete, live_map_full {c.get('live_map_full')} "
                                f"live_map_errors {c.get('live_map_errors')}")
            self.check_dropped(name, doc)
            return doc
        # A mode asked for by name that this kernel cannot have.
        for line in err:
            m = BY_NAME.search(line)
            lacked = self.lacked(m.group(1), m.group(2)) if m else None
            if lacked:
                self.gap(m.group(1), f"{name} not run: kleak: {m.group(0)} (confirmed: {lacked})", name)
                self.not_run.add(name)
                return None
        self.fail(f"{name}: kleak exit status {st} in the guest, no report: " + first_error(err, why))
        # kleak's stderr once per distinct text: every mode may fail alike.
        text = "\n".join(err[-40:])
        if text not in self.shown_stderr:
            self.shown_stderr.add(text)
            self.out.extend(f"{name}: guest stderr: {l}" for l in err[-40:])
        return None

    def leaky_stacks(self, doc):
        return [s for s in doc.get("stacks", []) if any(f.get("module") == "leaky" for f in s.get("frames") or [])]

    def check_leak(self, name, mode, doc):
        res = self.results["leak"].setdefault(mode, {"found": False})
        found = self.leaky_stacks(doc)
        if len(found) != 1:
            self.fail(f"{name}: expected 1 stack through [leaky], found {len(found)}")
            if not found:
                return
        n0 = len(self.problems)
        s = max(found, key=lambda s: s.get("bytes", 0))
        frames = s.get("frames") or []
        mine = [f for f in frames if f.get("module") == "leaky"]
        sizes = {z.get("bytes_alloc"): z.get("count") for z in s.get("sizes", [])}
        tasks = s.get("tasks", [])
        est = s.get("estimate") or {}
        self.out.append(f"{name}: stack rank {s.get('rank')} of {len(doc.get('stacks', []))}: {s.get('count')} "
                        f"allocations, {s.get('bytes')} bytes, sizes {sizes}, tasks "
                        + ", ".join(f"{t.get('comm')}/{t.get('tgid')}x{t.get('count')}" for t in tasks))
        self.out.append(f"{name}: frames: " + " <- ".join(frame_text(f) for f in frames))
        if s.get("count") != self.reads or s.get("bytes") != self.reads * PAGE:
            self.fail(f"{name}: {s.get('count')} allocations, {s.get('bytes')} bytes at the [leaky] stack, "
                      f"expected {self.reads} x {PAGE}")
        if not any("open" in (f.get("symbol") or "") for f in mine):
            self.fail(f"{name}: no [leaky] frame in an open function: " + ", ".join(frame_text(f) for f in mine))
        sampled = mode == "low_overhead" and s.get("estimated")
        if mode == "low_overhead":
            self.out.append(f"{name}: sampled 1 in {doc.get('stack_sample_every')}: estimated {s.get('estimated')}, "
                            f"{est.get('sampled')} of {est.get('site_sampled')} sampled at the call site, "
                            f"site {est.get('site_count')} allocations {est.get('site_bytes')} bytes, "
                            f"+-{est.get('count_error95')}, stack inferred {est.get('stack_inferred')}")
            if (doc.get("stack_sample_every") or 1) <= 1:
                self.fail(f"{name}: --low-overhead did not sample (stack_sample_every {doc.get('stack_sample_every')})")
            if not s.get("estimated"):
                # Every allocation there carried its own stack: the call
                # site kept losing its slot of kleak's direct-mapped per-CPU
                # site cache to another site (KASLR decides the slots).
                # Exact, then; checked as in the exact modes.
                self.out.append(f"{name}: note: every allocation at the [leaky] call site has its own stack "
                                "(site cache collision?): the counts are exact, not estimated")
        if sampled:
            # The call site's totals are exact; with one stack there, so is
            # the stack's share. sizes and tasks describe the sampled ones.
            if est.get("site_count") != self.reads or est.get("site_bytes") != self.reads * PAGE:
                self.fail(f"{name}: the call site's totals are {est.get('site_count')} allocations, "
                          f"{est.get('site_bytes')} bytes, expected {self.reads} x {PAGE}")
            if set(sizes) != {PAGE} or {t.get("comm") for t in tasks} != {self.comm}:
                self.fail(f"{name}: sampled sizes {sizes} and tasks {tasks}, expected only {PAGE} bytes by {self.comm!r}")
        else:
            if sizes != {PAGE: self.reads}:
                self.fail(f"{name}: sizes {sizes}, expected {{{PAGE}: {self.reads}}}")
            # One reading process: one task holding every allocation.
            if [(t.get("comm"), t.get("count")) for t in tasks] != [(self.comm, self.reads)]:
                self.fail(f"{name}: expected one task {self.comm!r} holding all {self.reads} allocations")
        if s.get("rank") != 1:
            self.out.append(f"{name}: note: the [leaky] stack is rank {s.get('rank')}, not the top stack")
        res.update(found=len(found) == 1 and len(self.problems) == n0, count=s.get("count"), bytes=s.get("bytes"),
                   estimated=bool(s.get("estimated")), rank=s.get("rank"))

    def check_late_module(self):
        """The CI job's case (issue 17): leaky loaded after kleak attached,
        read, unloaded before the final report. Its leak must be named, with
        the exact count, as an unloaded module's."""
        doc = self.load_case("late")
        res = self.results.setdefault("late_module", {"found": False})
        if not doc:
            return
        # The leak is the stack through leaky_open. Others through [leaky]
        # are its init's: the proc entries it made, whose inodes may stay
        # cached after rmmod (a proc_dir_entry lives as long as its inode).
        through = self.leaky_stacks(doc)
        found = [s for s in through if any(f.get("symbol") == "leaky_open" for f in s.get("frames") or [])]
        for s in through:
            if s not in found:
                self.out.append("late: note: also outstanding through [leaky]: "
                                f"{s.get('count')} x {s.get('bytes')} bytes: "
                                + " <- ".join(frame_text(f) for f in (s.get("frames") or [])[:6]))
        if len(found) != 1:
            self.fail(f"late: expected 1 stack through leaky_open [leaky] (loaded after kleak, unloaded before the "
                      f"report), found {len(found)} of {len(through)} through [leaky]: "
                      + "; ".join(" <- ".join(frame_text(f) for f in (s.get("frames") or [])[:4]) for s in through))
            if not found:
                return
        n0 = len(self.problems)
        s = max(found, key=lambda s: s.get("bytes", 0))
        frames = s.get("frames") or []
        mine = [f for f in frames if f.get("module") == "leaky"]
        self.out.append(f"late: {s.get('count')} allocations, {s.get('bytes')} bytes; frames: "
                        + " <- ".join(frame_text(f) for f in frames))
        if s.get("count") != self.reads or s.get("bytes") != self.reads * PAGE:
            self.fail(f"late: {s.get('count')} allocations, {s.get('bytes')} bytes at the [leaky] stack, "
                      f"expected {self.reads} x {PAGE}")
        opens = [f for f in mine if f.get("symbol") == "leaky_open"]
        if not opens:
            self.fail("late: no frame named leaky_open [leaky]: " + ", ".join(frame_text(f) for f in mine))
        elif not all(f.get("unloaded") is True for f in mine):
            self.fail("late: the module was unloaded, but its frames are not marked so: "
                      + ", ".join(frame_text(f) for f in mine))
        unknown = doc.get("frames_unknown") or {}
        if unknown:
            self.out.append(f"late: note: frames without a symbol: {unknown}")
        lines = self.check_module_lines(mine, opens[0] if opens else None) if self.ko else None
        core = self.check_core_lines([f for f in frames if not f.get("module")]) if self.vmlinux else None
        res.update(found=len(self.problems) == n0, count=s.get("count"), bytes=s.get("bytes"),
                   named=bool(opens), unloaded=all(f.get("unloaded") is True for f in mine), lines=lines,
                   core_lines=core)

    def check_core_lines(self, core):
        """The core kernel's frames of the leak's stack against addr2line -f
        -i on the vmlinux the guest had: by symbol+offset (the guest's
        KASLR offset is its own), names the vmlinux has once."""
        syms = {}
        for row in subprocess.run(["nm", self.vmlinux], capture_output=True, text=True).stdout.splitlines():
            parts = row.split()
            if len(parts) == 3 and parts[1] in "tT":
                syms.setdefault(parts[2], []).append(int(parts[0], 16))
        checked = agreed = with_line = 0
        for f in core:
            if f.get("source"):
                with_line += 1
            at = syms.get(f.get("symbol") or "")
            if not at or len(at) != 1:
                continue
            out = subprocess.run(["addr2line", "-f", "-i", "-e", self.vmlinux, hex(at[0] + (f.get("offset") or 0) - 1)],
                                 capture_output=True, text=True).stdout.splitlines()
            want = [(out[i], out[i + 1].split(" (discriminator")[0]) for i in range(0, len(out) - 1, 2)]
            got = [(c.get("symbol"), c.get("source")) for c in f.get("inlined") or []]
            got.append((f["symbol"], f.get("source")))
            checked += 1
            if same_lines(want, got):
                agreed += 1
            else:
                self.fail(f"late: {frame_text(f)}: kleak says {got}, addr2line -i says {want}")
        self.out.append(f"late: core kernel lines: {with_line} of {len(core)} frames have one; {agreed} of {checked} "
                        "checked agree with addr2line -i; e.g. "
                        + "; ".join(f"{frame_text(f)} {f.get('source')}" for f in core[:3]))
        if checked < 3 or with_line < len(core) - 1:
            self.fail(f"late: only {with_line} of {len(core)} core frames have a line, {checked} checked")
        return {"frames": len(core), "with_line": with_line, "checked": checked, "agreed": agreed}

    def check_module_lines(self, mine, open_frame):
        """Each [leaky] frame's lines against addr2line -f -i on the .ko; the
        open frame's own line must be leaky.c's kmalloc()."""
        n0 = len(self.problems)
        for f in mine:
            if not f.get("symbol"):
                continue
            want = ko_addr2line(self.ko, f["symbol"], f.get("offset") or 0)
            got = [(c.get("symbol"), c.get("source")) for c in f.get("inlined") or []]
            got.append((f["symbol"], f.get("source")))
            if want is None:
                self.fail(f"late: addr2line found no {f['symbol']} in {self.ko}")
            elif not same_lines(want, got):
                self.fail(f"late: {frame_text(f)}: kleak says {got}, addr2line -i says {want}")
        want_line = kmalloc_line()
        got = open_frame.get("source") if open_frame else None
        self.out.append(f"late: leaky_open's line {got}, inlined {[c.get('symbol') for c in (open_frame or {}).get('inlined') or []]}; "
                        f"leaky.c's kmalloc() is line {want_line}")
        # Relative to the directory all its units share: "leaky.c", or
        # "kmod/leaky.c" where kbuild adds a unit from elsewhere (6.12's
        # .module-common.c).
        if not got or not (got == f"leaky.c:{want_line}" or got.endswith(f"/leaky.c:{want_line}")):
            self.fail(f"late: leaky_open's source is {got}, expected leaky.c:{want_line} (its kmalloc())")
        return {"source": got, "match": len(self.problems) == n0}

    def check_fixed(self, name, mode, doc):
        c = doc.get("counters", {})
        mine = self.leaky_stacks(doc)
        self.out.append(f"{name}: {len(doc.get('stacks', []))} stacks outstanding, none through [leaky] expected; "
                        f"allocs recorded {c.get('allocs_recorded')}, frees matched {c.get('frees_matched')}")
        for s in mine:
            self.fail(f"{name}: {s.get('count')} allocations still held at a [leaky] stack: "
                      + " <- ".join(frame_text(f) for f in s.get("frames") or []))
        # Without this, a kleak that traced nothing would pass.
        seen = (c.get("allocs_recorded") or 0) >= self.reads and (c.get("frees_matched") or 0) >= self.reads
        if not seen:
            self.fail(f"{name}: kleak did not see the {self.reads} open/close pairs (counters {c})")
        self.results["fixed"][mode] = {"clean": not mine and seen}

    def check_stack_cache(self, name, mode, doc):
        """Exact modes: the cache was used; in verify mode every stack it gave
        was the one the walk gave. Not when this kernel lacks it (a gap)."""
        if any(d.get("part") == "stack-cache" for d in doc.get("degraded") or []):
            return
        sc = doc.get("counters", {}).get("stack_cache", {})
        self.out.append(f"{name}: stack cache: hits {sc.get('hits')}, cached {sc.get('cached')}, "
                        f"uncacheable {sc.get('uncacheable')}, verify mismatches {sc.get('verify_mismatches')}")
        if not sc.get("hits"):
            self.fail(f"{name}: the stack cache never hit ({sc})")
        if sc.get("verify_mismatches") != 0:
            self.fail(f"{name}: {sc.get('verify_mismatches')} cached stacks differed from the walk")

    def check_mode(self, mode, suffix):
        leak = self.load_case("leak" + suffix)
        if leak:
            if mode == "default":
                self.attached = leak
                self.out.append(f"kernel {leak.get('kernel')}, attached {', '.join(leak.get('attached', []))}"
                                + (f", missing {', '.join(leak['missing'])}" if leak.get("missing") else ""))
            self.check_leak("leak" + suffix, mode, leak)
        else:
            self.results["leak"][mode] = {"found": False, "not_run": "leak" + suffix in self.not_run}
        fixed = self.load_case("fixed" + suffix)
        if fixed:
            self.check_fixed("fixed" + suffix, mode, fixed)
        else:
            self.results["fixed"][mode] = {"clean": False, "not_run": "fixed" + suffix in self.not_run}
        if mode != "low_overhead":
            for name, doc in (("leak" + suffix, leak), ("fixed" + suffix, fixed)):
                if doc:
                    self.check_stack_cache(name, mode, doc)

    def check_ci(self):
        for name, want in (("ci-leak", "1"), ("ci-fixed", "0")):
            st = self.log.status.get(name, "?")
            doc, why = self.log.json(name)
            self.results["ci"][name[3:]] = int(st) if st.isdigit() else st
            verdict = (doc or {}).get("ci", {})
            self.out.append(f"{name}: kleak --ci exit status {st}: {verdict.get('summary') or 'no verdict'}")
            if st != want:
                self.fail(f"{name}: kleak --ci exited {st}, expected {want}: "
                          + first_error(self.log.stderr(name), why or "see its report"))
            if not doc:
                continue
            self.check_dropped(name, doc)
            mine = self.leaky_stacks(doc)
            if name == "ci-leak":
                if [(s.get("count"), s.get("bytes")) for s in mine] != [(self.reads, self.reads * PAGE)]:
                    self.fail(f"{name}: expected one [leaky] stack with {self.reads} x {PAGE} bytes, found "
                              + str([(s.get("count"), s.get("bytes")) for s in mine]))
                # --peek: the leaked seq_file buffers hold the module's
                # schedstat-like text, read in place without a vmcore.
                peek = (mine[0].get("peek") or {}) if mine else {}
                groups = peek.get("groups") or []
                samples = peek.get("samples") or []
                self.out.append(f"{name}: peek: {len(samples)} samples, groups "
                                + ", ".join(f"{g.get('count')}x {g.get('shape')!r}" for g in groups))
                if not groups or groups[0].get("count") != len(samples) or not samples \
                        or not (groups[0].get("shape") or "").startswith("version #\ntimestamp #"):
                    self.fail(f"{name}: --peek did not show the schedstat-like text in every sample: {groups}")
            elif mine:
                self.fail(f"{name}: a [leaky] stack was judged a leak on the fixed file")
            if st != want:
                # Name what kleak judged (a phantom is as much a finding as a miss).
                c = doc.get("counters", {})
                for s in doc.get("stacks", [])[:3]:
                    self.out.append(f"{name}: judged: {s.get('count')} x {[z.get('bytes_alloc') for z in s.get('sizes', [])]}"
                                    f" bytes, oldest {s.get('oldest_age_ms')} ms, tasks "
                                    + ", ".join(f"{t.get('comm')}x{t.get('count')}" for t in s.get("tasks", []))
                                    + ": " + " <- ".join(frame_text(f) for f in s.get("frames") or []))
                self.out.append(f"{name}: counters: recursion misses {c.get('recursion_misses_by_program')}, "
                                f"missed frees {c.get('missed_frees')}, complete {doc.get('complete')}")

    def check_selftest(self):
        st = self.log.status.get("selftest", "?")
        doc, why = self.log.json("selftest")
        if not doc:
            self.fail(f"selftest: {why} (exit status {st}): {first_error(self.log.stderr('selftest'), '')}")
            self.out.extend(f"selftest: guest stderr: {l}" for l in self.log.stderr("selftest")[-20:])
            return {"exit": st}
        rows = {r.get("family"): r for r in doc.get("results", [])}
        self.out.append("selftest: exit status " + st + ": " + ", ".join(
            f"{f} {r.get('result')}" + (f" ({r.get('detail')})" if r.get("detail") else "") for f, r in rows.items()))
        if st != "0" or doc.get("passed") is not True:
            self.fail(f"selftest: exit status {st}, passed {doc.get('passed')}")
        for fam, r in rows.items():
            if r.get("result") == "ok":
                continue
            detail = r.get("detail") or ""
            why = None
            if r.get("result") == "not_covered":
                m = NO_TRACEPOINT.search(detail)
                why = self.lacked(fam, detail) if m else self.kernel_gaps.get(fam)
            if why:
                self.gap(fam, f"selftest: not covered: {detail} (confirmed: {why})", "selftest")
            else:
                self.fail(f"selftest: {fam} {r.get('result')}, the guest does not say the kernel lacks it: {r}")
        for d in doc.get("degraded") or []:
            why = self.lacked(d.get("part"), d.get("reason"))
            if why:
                self.gap(d.get("part"), f"dropped: {d.get('reason')} (confirmed: {why})", "selftest")
            else:
                self.fail(f"selftest: kleak dropped {d.get('part')}: {d.get('reason')}")
        return {"exit": st, "passed": doc.get("passed"), "results": {f: r.get("result") for f, r in rows.items()}}

    def run(self):
        if not self.log.result:
            self.fail("the guest never printed the RESULT marker (crash, panic or timeout)")
        if not self.log.events.get("kmem"):
            self.fail("the guest's tracefs shows no kmem events: no ground truth for gaps")
        self.attached = None
        loads = self.read_loads()  # first: it says what the kernel lacks
        for mode, suffix in MODES:
            self.check_mode(mode, suffix)
        self.check_late_module()
        self.check_ci()
        selftest = self.check_selftest()
        if "diag" in self.log.errs:
            self.out.extend(f"diag: kleak -vv: {l}" for l in self.log.stderr("diag"))
        for what, g in self.gaps.items():
            self.out.append(f"gap: {what}: {g['reason']} [{', '.join(g['seen_in'])}]")
        a = self.attached or {}
        return {
            "verdict": "FAIL" if self.problems else "PASS",
            "families": {"families": a.get("families"), "attached": a.get("attached"), "missing": a.get("missing"),
                         "degraded": a.get("degraded")},
            "selftest": selftest,
            "loads": loads,
            "leak": self.results["leak"],
            "late_module": self.results.get("late_module"),
            "fixed": self.results["fixed"],
            "ci_exit": self.results["ci"],
            "gaps": [{"what": w, **g} for w, g in self.gaps.items()],
            "problems": self.problems,
            "guest_first_line_s": self.log.first_s,
            "guest_cases_s": {n: round(b - a, 2) for n, (a, b) in self.log.times.items()},
        }


def one_line(text):
    return " | ".join(l.strip() for l in str(text).splitlines() if l.strip())


def first_error(err, default):
    """kleak's error line from its stderr, else its last line, else DEFAULT."""
    for l in err:
        if l.startswith("kleak: error:"):
            return l
    return err[-1] if err else default


def frame_text(f):
    name = f.get("symbol") or f.get("addr") or "?"
    if not f.get("symbol") and f.get("unknown"):
        name += f" ({f['unknown']})"
    off = f.get("offset")
    s = f"{name}+{off:#x}" if isinstance(off, int) else name
    return s + (f" [{f['module']}{', unloaded' if f.get('unloaded') else ''}]" if f.get("module") else "")


def kmalloc_line():
    """The line of leaky_open's kmalloc() in tests/kmod/leaky.c."""
    with open(LEAKY_C) as f:
        for n, line in enumerate(f, 1):
            if "buf = kmalloc(PAGE_SIZE" in line:
                return n
    return None


def ko_addr2line(ko, symbol, offset):
    """addr2line -f -i in the .ko for the return address SYMBOL+OFFSET (its
    call: the byte before), as (function, file:line) pairs, innermost first."""
    table = subprocess.run(["objdump", "-t", ko], capture_output=True, text=True).stdout
    for row in table.splitlines():
        parts = row.split()
        # value, flags..., section, size, name
        if len(parts) >= 5 and parts[-1] == symbol and "F" in parts[1:-3]:
            value, section = int(parts[0], 16), parts[-3]
            break
    else:
        return None
    out = subprocess.run(["addr2line", "-f", "-i", "-j", section, "-e", ko, hex(value + offset - 1)],
                         capture_output=True, text=True).stdout.splitlines()
    return [(out[i], out[i + 1].split(" (discriminator")[0]) for i in range(0, len(out) - 1, 2)]


def same_lines(want, got):
    """addr2line's full paths end with kleak's tree-relative ones; the last
    function is the frame's own (kallsyms' name, addr2line's DWARF name)."""
    if len(want) != len(got):
        return False
    for i, ((wf, wl), (gf, gl)) in enumerate(zip(want, got)):
        if not gl or not (wl == gl or wl.endswith("/" + gl)):
            return False
        if i < len(want) - 1 and wf != gf:
            return False
    return True


def meta_value(v):
    try:
        return float(v) if "." in v else int(v)
    except ValueError:
        return v


def pop_option(args, name):
    """The value of `name VALUE` in args, taken out of them; None if absent."""
    if name not in args:
        return None
    at = args.index(name)
    if at + 1 >= len(args):
        raise ValueError(name)
    value = args[at + 1]
    del args[at:at + 2]
    return value


def main():
    args = sys.argv[1:]
    summary_file, meta = None, {}
    if "--summary" in args:
        at = args.index("--summary")
        if at + 1 >= len(args):
            print(__doc__.strip().splitlines()[2], file=sys.stderr)
            return 2
        summary_file = args[at + 1]
        meta = dict(a.split("=", 1) for a in args[at + 2:] if "=" in a)
        args = args[:at]
    try:
        ko, vmlinux = pop_option(args, "--ko"), pop_option(args, "--vmlinux")
    except ValueError:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    if len(args) != 3:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    with open(args[0], errors="replace") as f:
        log = Log(f.read())
    judge = Judge(log, int(args[1]), args[2], ko, vmlinux)
    summary = judge.run()
    for line in judge.out:
        print(line)
    for p in judge.problems:
        print(f"FAIL: {p}")
    if summary_file:
        line = {k: meta_value(v) if k.startswith("t_") else v for k, v in meta.items()}
        line.update(summary)
        with open(summary_file, "w") as f:
            f.write(json.dumps(line, sort_keys=True) + "\n")
    return 1 if judge.problems else 0


if __name__ == "__main__":
    sys.exit(main())
