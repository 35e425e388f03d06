#!/usr/bin/env python3
"""The kernel matrix of docs/kernels.md, from scripts/vmtest's own output.

usage: matrix.py MATRIX_JSONL [DOC]

MATRIX_JSONL: one summary line per kernel (tests/vmtest/check.py --summary;
scripts/vmtest writes them to $cache/matrix.jsonl). Prints the tables as
Markdown; with DOC, replaces what stands between the lines
"<!-- matrix:begin -->" and "<!-- matrix:end -->" in DOC instead.
"""
import json
import sys

BEGIN, END = "<!-- matrix:begin -->", "<!-- matrix:end -->"
FAMILIES = ["kmalloc", "kmem_cache", "page", "percpu", "vmalloc", "rcu"]
# The load matrix's parts that stand for a family (user/probe/load_matrix.h).
FAMILY_PART = {"kmem_cache": "kmem_cache", "page": "page", "percpu": "percpu", "vmalloc": "vmalloc"}
MODES = [("default", "default (stack cache on)"), ("verify", "--stack-cache verify"), ("low_overhead", "--low-overhead")]


def core_cell(c):
    if not c:
        return "not checked"
    return f"{c['with_line']} of {c['frames']}, {c['agreed']} of {c['checked']} checked agree"


def cell(s):
    return str(s).replace("|", "\\|").replace("\n", " ")


def leak_cell(m):
    if m.get("not_run"):
        return "not run (refused: see gaps)"
    if not m.get("found"):
        return "**not found**"
    est = ", estimated" if m.get("estimated") else ""
    return f"{m['count']} × {m['bytes'] // max(m['count'], 1)} B at `leaky_open [leaky]`, rank {m['rank']}{est}"


def family_rows(d):
    rows = []
    results = d.get("selftest", {}).get("results", {})
    gaps = d.get("loads", {}).get("gaps", {})
    for fam in FAMILIES:
        part = FAMILY_PART.get(fam)
        gap = gaps.get(part) if part else None
        loads = "no: " + gap if gap else "yes"
        res = results.get(fam, "?")
        attached = "yes" if res in ("ok", "missed") else "no"
        rows.append((fam, loads, attached, res))
    return rows


def render(docs):
    out = []
    out.append("| kernel | suite | module built with | load matrix | selftest | `--ci` leak / fixed | verdict |")
    out.append("|---|---|---|---|---|---|---|")
    for d in docs:
        loads = d.get("loads", {})
        lm = f"{loads.get('cases', '?')} cases, {loads.get('failed', '?')} failed" if loads else "not run"
        st = d.get("selftest", {})
        ci = d.get("ci_exit", {})
        out.append(f"| {cell(d.get('kernel') or d.get('selector'))} | {cell(d.get('suite', ''))} | "
                   f"{cell(d.get('module_build', ''))} | {lm} | "
                   f"{'passed' if st.get('passed') else 'failed'} | {ci.get('leak', '?')} / {ci.get('fixed', '?')} | "
                   f"{d.get('verdict', '?')} |")
    out.append("")
    out.append("Per family (loads: in every mode of `kleak selftest --loads`; attached and result: `kleak selftest`):")
    out.append("")
    out.append("| kernel | family | loads | attached | selftest |")
    out.append("|---|---|---|---|---|")
    for d in docs:
        for fam, loads, attached, res in family_rows(d):
            out.append(f"| {cell(d.get('kernel'))} | {fam} | {cell(loads)} | {attached} | {res} |")
    out.append("")
    out.append("Per mode: the leaky module's 100 opens of `/proc/kleak_leaky` (each leaks 4096 bytes), then "
               "`/proc/kleak_fixed` (must leave nothing):")
    out.append("")
    out.append("| kernel | mode | leak found | fixed file clean |")
    out.append("|---|---|---|---|")
    for d in docs:
        for key, name in MODES:
            leak = d.get("leak", {}).get(key, {})
            fixed = d.get("fixed", {}).get(key, {})
            clean = "not run" if fixed.get("not_run") else ("yes" if fixed.get("clean") else "**no**")
            out.append(f"| {cell(d.get('kernel'))} | {name} | {cell(leak_cell(leak))} | {clean} |")
    out.append("")
    out.append("The module loaded after kleak attached, read 100 times and unloaded before the final report "
               "(the `late` case):")
    out.append("")
    out.append("| kernel | leak named | frames marked unloaded | leaky_open's line (from leaky.ko's DWARF) | "
               "[leaky] frames = `addr2line -i` | core frames with a line, = `addr2line -i` (vmlinux from -dbg) |")
    out.append("|---|---|---|---|---|---|")
    for d in docs:
        late = d.get("late_module") or {}
        named = (f"{late['count']} × {late['bytes'] // max(late['count'], 1)} B at `leaky_open [leaky, unloaded]`"
                 if late.get("found") else "**no**" if late else "not run")
        lines = late.get("lines") or {}
        line = f"`{lines['source']}`" if lines.get("source") else "none" if lines else "not checked"
        match = ("yes" if lines.get("match") else "**no**") if lines else "not checked"
        out.append(f"| {cell(d.get('kernel'))} | {cell(named)} | {'yes' if late.get('unloaded') else 'no'} | "
                   f"{line} | {match} | {core_cell(late.get('core_lines'))} |")
    out.append("")
    out.append("Gaps, each confirmed by the guest itself (its tracefs, or a helper probe of `selftest --loads`):")
    out.append("")
    out.append("| kernel | what | why | seen in |")
    out.append("|---|---|---|---|")
    for d in docs:
        gaps = d.get("gaps", [])
        if not gaps:
            out.append(f"| {cell(d.get('kernel'))} | none | | |")
        for g in gaps:
            out.append(f"| {cell(d.get('kernel'))} | {cell(g['what'])} | {cell(g['reason'])} | "
                       f"{cell(', '.join(g.get('seen_in', [])))} |")
    problems = [(d.get("kernel") or d.get("selector"), p) for d in docs for p in d.get("problems", [])]
    if problems:
        out.append("")
        out.append("Problems:")
        out.append("")
        for k, p in problems:
            out.append(f"- {cell(k)}: {cell(p)}")
    return "\n".join(out) + "\n"


def main():
    if len(sys.argv) not in (2, 3):
        print(__doc__, file=sys.stderr)
        return 2
    docs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
    table = render(docs)
    if len(sys.argv) == 2:
        sys.stdout.write(table)
        return 0
    text = open(sys.argv[2]).read()
    if BEGIN not in text or END not in text:
        print(f"matrix.py: {sys.argv[2]} has no {BEGIN} ... {END} block", file=sys.stderr)
        return 1
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    open(sys.argv[2], "w").write(head + BEGIN + "\n" + table + END + tail)
    return 0


if __name__ == "__main__":
    sys.exit(main())
