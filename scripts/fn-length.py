#!/usr/bin/env python3
"""List non-test Rust functions longer than a limit (lines from `fn` to its closing brace); exit 1
if any. Usage: scripts/fn-length.py [LIMIT=80] [ROOT=crates]. Run by .ci/run."""
import re, sys, pathlib
limit = int(sys.argv[1]) if len(sys.argv) > 1 else 80
root = pathlib.Path(sys.argv[2] if len(sys.argv) > 2 else "crates")
fn_re = re.compile(r'^\s*(pub(\([^)]*\))?\s+)?(const\s+)?(async\s+)?(unsafe\s+)?(extern\s+"C"\s+)?fn\s+(\w+)')
out = []
for p in sorted(root.rglob("*.rs")):
    if "/tests/" in str(p) or "/benches/" in str(p):
        continue
    lines = p.read_text().splitlines()
    in_test = None  # brace depth at which the test module started
    depth = 0
    i = 0
    pending_cfg_test = False
    while i < len(lines):
        line = lines[i]
        s = line.strip()
        if s.startswith("#[cfg(test)]"):
            pending_cfg_test = True
        m = fn_re.match(line)
        if m and in_test is None:
            # find the body's opening brace and its end
            start = i; d = 0; opened = False; j = i
            while j < len(lines):
                code = re.sub(r'//.*', '', lines[j])
                code = re.sub(r'"(\\.|[^"\\])*"', '""', code)
                code = re.sub(r"'(\\.|[^'\\])'", "''", code)
                for ch in code:
                    if ch == '{': d += 1; opened = True
                    elif ch == '}': d -= 1
                if opened and d == 0: break
                if not opened and code.rstrip().endswith(';'): break
                j += 1
            n = j - start + 1
            if opened and n > limit:
                out.append((n, f"{p}:{start+1}", m.group(7)))
        code = re.sub(r'//.*', '', line)
        code = re.sub(r'"(\\.|[^"\\])*"', '""', code)
        for ch in code:
            if ch == '{':
                if pending_cfg_test and in_test is None:
                    in_test = depth; pending_cfg_test = False
                depth += 1
            elif ch == '}':
                depth -= 1
                if in_test is not None and depth == in_test:
                    in_test = None
        i += 1
for n, loc, name in sorted(out, reverse=True):
    print(f"{n:5} {name:30} {loc}")
print(f"{len(out)} non-test functions over {limit} lines", file=sys.stderr)
sys.exit(1 if out else 0)
