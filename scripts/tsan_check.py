#!/usr/bin/python3
"""Reads ThreadSanitizer reports and fails on every one that is not a library's own.

TSan's `race:` suppressions match a frame in EITHER stack of a report, so one naming
OpenCV would also hide a race between OpenCV writing and coe reading. This checker
excuses a report only when the library alone is involved, using
scripts/tsan-libraries.txt (one library per line, with the reason):
  - a data race: every frame of both access stacks lies in a listed library or in
    the C/C++ runtime (libtsan's interceptors, libstdc++, libc), and at least one in
    a listed library; a single frame of coe's own code makes it count. A frame of our
    binaries counts as a library's when it runs that library's header code: its
    function names the library's namespace (a `namespace` line of the file) and no
    coe:: (httplib's ThreadPool worker, instantiated from httplib.h in the binary);
  - a data race on the dynamic loader's own memory: both accesses are made by the
    loader itself (the innermost frame below libtsan's interceptor is in ld-linux, as in
    `free <- _dl_deallocate_tls` against `malloc <- allocate_dtv_entry`), whatever code
    called into it. The loader's DTV blocks are memory no caller ever sees: a thread
    only asks for its thread_local (tls_get_addr_tail), so coe's frame above that is a
    caller, not an accessor;
  - a lock-order inversion: every mutex is taken by a listed library (the innermost
    frame below the interceptor is the library's).
Everything else is a failure, printed in full.

Usage:
  tsan_check.py DIR                   check the report files (log_path) in DIR
  tsan_check.py --expect-race -- CMD  run CMD and pass only if it produced a race
                                      report that is NOT excused (the canary)
"""
import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
RUNTIME = ("libtsan.so", "libstdc++.so", "libc.so", "libgcc_s.so", "ld-linux")
FRAME = re.compile(r"^\s+#\d+ .*\(([^()]+?)\+0x[0-9a-f]+\)(?: \(BuildId: [0-9a-f]+\))?\s*$")


NAMESPACES = {}  # "httplib::" -> library: that library's header code, compiled into our binaries


def listed_libraries():
    libs = {}
    with open(os.path.join(HERE, "tsan-libraries.txt")) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("namespace "):
                _, ns, lib = line.split(None, 3)[:3]
                NAMESPACES[ns] = lib
                continue
            name, _, reason = line.partition(" ")
            libs[name] = reason.strip()
    return libs


def header_library(frame):
    """The library whose header code a frame of our own binary runs: its function names
    the library's namespace (e.g. std::thread running httplib::ThreadPool::worker) and
    nothing of coe's. None otherwise."""
    if "coe::" in frame:
        return None
    for ns, lib in NAMESPACES.items():
        if ns in frame:
            return lib
    return None


def split_reports(text):
    reports, cur = [], None
    for line in text.splitlines():
        if line.startswith("WARNING: ThreadSanitizer:"):
            cur = [line]
            reports.append(cur)
        elif cur is not None:
            cur.append(line)
            if line.startswith("SUMMARY: ThreadSanitizer"):
                cur = None
    return reports


def stacks(report):
    """The stacks that matter: the accesses (races) or the mutex acquisitions."""
    out, cur, take = [], None, False
    for line in report[1:]:
        s = line.strip()
        if not s:
            cur = None
            continue
        if not line.startswith(" "):
            continue
        if s.startswith("#"):
            if take:
                if cur is None:
                    cur = []
                    out.append(cur)
                cur.append(line)
            continue
        cur = None
        # Headers of the stacks that matter; thread-creation and allocation stacks
        # ("Thread T1 ... created by", "Location is heap block ...") do not.
        take = bool(re.match(r"(Read|Write|Atomic read|Atomic write|Previous read|Previous write|"
                             r"Previous atomic read|Previous atomic write) of size", s)
                    or re.match(r"Mutex M\d+ (acquired|previously acquired)", s))
    return out


def module(frame):
    m = FRAME.match(frame)
    if m:
        return os.path.basename(m.group(1))
    # Instrumented code symbolizes as "func file:line (module+0x...)" too; anything else
    # (no module) counts as the project's.
    return ""


def inner_frame(stack):
    """The innermost frame below libtsan's interceptor ("" when there is none)."""
    return next((f for f in stack if not module(f).startswith("libtsan.so")), "")


def excuse(report, libs):
    """The listed library that excuses `report`, or None."""
    kind = report[0]
    st = stacks(report)
    if not st:
        return None
    def lib_of(mod):
        for name in libs:
            if mod.startswith(name):
                return name
        return None
    if "data race" in kind:
        loader = lib_of("ld-linux-x86-64.so.2")
        if loader and all(module(inner_frame(stack)).startswith("ld-linux") for stack in st):
            return loader
        found = None
        for stack in st:
            for frame in stack:
                mod = module(frame)
                lib = lib_of(mod) or header_library(frame)
                if lib:
                    found = found or lib
                elif not mod.startswith(RUNTIME):
                    return None
        return found
    if "lock-order-inversion" in kind:
        found = None
        for stack in st:
            inner = next((f for f in stack if not module(f).startswith("libtsan.so")), None)
            lib = lib_of(module(inner)) if inner else None
            if not lib:
                return None
            found = lib
        return found
    return None


def check_text(text, libs, quiet=False):
    """(excused, failures) for the reports in `text`."""
    excused, failures = [], []
    for r in split_reports(text):
        lib = excuse(r, libs)
        (excused if lib else failures).append((lib, r))
    return excused, failures


def main(argv):
    libs = listed_libraries()
    if len(argv) >= 3 and argv[1] == "--expect-race" and argv[2] == "--":
        with tempfile.TemporaryDirectory() as d:
            env = dict(os.environ)
            env["TSAN_OPTIONS"] = "halt_on_error=0 exitcode=0 log_path=" + os.path.join(d, "tsan")
            subprocess.run(argv[3:], env=env, check=False)
            text = "".join(open(os.path.join(d, f), errors="replace").read() for f in sorted(os.listdir(d)))
        excused, failures = check_text(text, libs)
        races = [r for _, r in failures if "data race" in r[0]]
        if races:
            print("canary: the race is reported and not excused by tsan-libraries.txt:")
            print("\n".join(races[0][:12]))
            return 0
        print("canary FAILED: no unexcused data race report (%d excused)" % len(excused))
        for lib, r in excused:
            print("excused by %s:\n%s" % (lib, "\n".join(r)))
        return 1
    if len(argv) != 2:
        print(__doc__)
        return 2
    d = argv[1]
    files = sorted(os.listdir(d)) if os.path.isdir(d) else []
    text = "".join(open(os.path.join(d, f), errors="replace").read() for f in files)
    excused, failures = check_text(text, libs)
    counts = {}
    for lib, _ in excused:
        counts[lib] = counts.get(lib, 0) + 1
    for lib, n in sorted(counts.items()):
        print("tsan: %d report(s) excused, wholly inside %s (reason: scripts/tsan-libraries.txt)" % (n, lib))
    for _, r in failures:
        print("\n".join(r))
    print("tsan: %d report(s) in %d file(s): %d excused, %d failing" %
          (len(excused) + len(failures), len(files), len(excused), len(failures)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
