#!/usr/bin/env bash
# Lists the Rust functions longer than N lines (default 60) under a directory, longest
# first: `scripts/fn-lengths.sh src/consumer 60`. Crude on purpose: a function runs from its
# `fn` line to the line where its braces balance again (braces inside strings and comments
# are counted too; format strings balance theirs). Test modules count like any other code.
set -euo pipefail

dir=${1:?usage: scripts/fn-lengths.sh DIR [N]}
limit=${2:-60}

mapfile -d '' files < <(find "$dir" -name '*.rs' -print0 | sort -z)
python3 - "$limit" "${files[@]}" <<'PY'
import re
import sys

limit = int(sys.argv[1])
fn = re.compile(r'^\s*(?:pub(?:\([^)]*\))?\s+)?(?:const\s+)?(?:async\s+)?(?:unsafe\s+)?fn\s+(\w+)')
long = []
for path in sys.argv[2:]:
    lines = open(path, encoding='utf-8').read().split('\n')
    for start, line in enumerate(lines):
        m = fn.match(line)
        if not m:
            continue
        depth, opened = 0, False
        for end in range(start, len(lines)):
            text = re.sub(r"'[{}]'", '', lines[end])
            if not opened and ';' in text and '{' not in text:
                break  # a declaration without a body (trait method)
            depth += text.count('{') - text.count('}')
            opened = opened or '{' in text
            if opened and depth <= 0:
                length = end - start + 1
                if length > limit:
                    long.append((length, f'{path}:{start + 1}', m.group(1)))
                break
for length, where, name in sorted(long, reverse=True):
    print(f'{length:5} {where} {name}')
PY
