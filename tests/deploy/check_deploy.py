#!/usr/bin/env python3
"""Checks the fleet recipes in deploy/ with what this machine can run.

  check_deploy.py DEPLOY_DIR KLEAK_BIN

1. Every YAML file parses (python3-yaml), and the Kubernetes objects have
   the settings kleak needs (privileged, hostPID, the BTF and bpffs mounts).
2. `systemd-analyze verify` accepts every unit with no message at all (it
   exits 0 on unknown keys and bad values, but prints them). The units name
   /usr/local/sbin/kleak, which a build tree does not have: they are
   verified from a copy that names KLEAK_BIN instead, nothing else changed.
3. `promtool check config` accepts the Prometheus configuration, and the
   Parca one scrapes kleak serve's profile path.
4. Every kleak command line in the recipes is accepted by kleak's real
   parser: each runs as the unprivileged user nobody, so kleak parses and
   validates the whole command line (a bad flag or value: status 2, "see
   kleak --help") and then stops at its first runtime check (status 1:
   privileges, or the --output directory), before loading anything.

Prints one line per check; exits 1 when any fails, 0 otherwise.
"""
import os
import pathlib
import shlex
import shutil
import subprocess
import sys
import tempfile

import yaml

failures = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        failures.append(what)


def kleak_argvs(node):
    """Every kleak command line in a parsed YAML document: a list whose first
    element is a path to kleak, or a container's command + args."""
    if isinstance(node, dict):
        cmd = node.get("command")
        if isinstance(cmd, list) and cmd and str(cmd[0]).endswith("/kleak"):
            yield [str(a) for a in cmd + node.get("args", [])]
            return
        for v in node.values():
            yield from kleak_argvs(v)
    elif isinstance(node, list):
        if node and isinstance(node[0], str) and node[0].endswith("/kleak"):
            yield [str(a) for a in node]
            return
        for v in node:
            yield from kleak_argvs(v)


def unit_argvs(text):
    for line in text.splitlines():
        key, _, value = line.partition("=")
        if key.startswith("Exec") and "/kleak" in value:
            argv = shlex.split(value.lstrip("-@!+:"))
            if argv[0].endswith("/kleak"):
                yield argv


def as_nobody():
    if os.geteuid() == 0:
        os.setgid(65534)
        os.setgroups([])
        os.setuid(65534)


def main():
    deploy, kleak = pathlib.Path(sys.argv[1]), os.path.abspath(sys.argv[2])
    argvs = []  # (file, argv)

    for path in sorted(deploy.rglob("*.y*ml")):
        try:
            docs = list(yaml.safe_load_all(path.read_text()))
        except yaml.YAMLError as e:
            check(False, f"{path.name}: YAML: {e}")
            continue
        check(bool(docs) and all(d is not None for d in docs), f"{path.name}: YAML parses")
        for doc in docs:
            argvs += [(path.name, a) for a in kleak_argvs(doc)]
            if isinstance(doc, dict) and doc.get("kind") in ("DaemonSet", "Job"):
                spec = doc["spec"]["template"]["spec"]
                c = spec["containers"][0]
                mounts = {m["mountPath"] for m in c.get("volumeMounts", [])}
                check(spec.get("hostPID") is True and c["securityContext"].get("privileged") is True
                      and {"/sys/kernel/btf", "/sys/fs/bpf"} <= mounts,
                      f"{path.name}: {doc['kind']} is privileged, hostPID, mounts BTF and bpffs")
                args = c.get("args", [])
                check("--format" in args and "json" in args, f"{path.name}: JSON to stdout")
                if doc["kind"] == "Job":
                    check("--duration" in args, f"{path.name}: the Job ends by --duration")

    units = sorted(deploy.glob("systemd/*.service")) + sorted(deploy.glob("systemd/*.timer"))
    analyze = shutil.which("systemd-analyze")
    check(analyze is not None, "systemd-analyze is installed (package systemd)")
    with tempfile.TemporaryDirectory() as tmp:
        for u in units:
            text = u.read_text()
            argvs += [(u.name, a) for a in unit_argvs(text)]
            (pathlib.Path(tmp) / u.name).write_text(text.replace("/usr/local/sbin/kleak", kleak))
        if analyze and units:
            r = subprocess.run([analyze, "verify"] + [u.name for u in units], cwd=tmp, capture_output=True,
                               text=True, timeout=60)
            out = (r.stdout + r.stderr).strip()
            check(r.returncode == 0 and not out, f"systemd-analyze verify {len(units)} units"
                  + (f": {out}" if out else ""))

    promtool = shutil.which("promtool")
    check(promtool is not None, "promtool is installed (package prometheus)")
    for cfg in sorted(deploy.glob("prometheus/*.yml")):
        if promtool:
            r = subprocess.run([promtool, "check", "config", str(cfg)], capture_output=True, text=True, timeout=60)
            check(r.returncode == 0, f"promtool check config {cfg.name}" + ("" if r.returncode == 0 else
                                                                             f": {(r.stdout + r.stderr).strip()}"))
    parca = [d for p in deploy.glob("parca/*.yaml") for d in yaml.safe_load_all(p.read_text())]
    check(any(c.get("profiling_config", {}).get("pprof_config", {}).get("kernel_leaks", {}).get("path")
              == "/debug/pprof/kleak" for d in parca for c in d.get("scrape_configs", [])),
          "parca.yaml scrapes /debug/pprof/kleak")

    check(len(argvs) >= 7, f"{len(argvs)} kleak command lines found in the recipes")
    for name, argv in argvs:
        r = subprocess.run([kleak] + argv[1:], capture_output=True, text=True, timeout=30,
                           preexec_fn=as_nobody, stdin=subprocess.DEVNULL)
        err = r.stderr.strip()
        check(r.returncode == 1 and "--help" not in err and err.count("\n") == 0,
              f"{name}: kleak {' '.join(argv[1:])} -> status {r.returncode}: {err}")

    print(f"{len(failures)} failed" if failures else "all passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
