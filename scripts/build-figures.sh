#!/bin/bash
# Build figures for docs/architecture.md: clean build, incremental after an edit
# of the redaction code, link of the test suite, number of test binaries.
# usage: scripts/build-figures.sh DIR REDACT_FILE OUT
# DIR is a checkout (a git worktree) whose target/ is removed first; OUT gets
# one line per figure. Needs PostgreSQL as for the tests.
set -u
cd "$1"; out="$3"
rm -rf target
export CARGO_INCREMENTAL=
s=$(date +%s.%N); cargo build --workspace --all-targets >/dev/null 2>&1; e=$(date +%s.%N)
echo "clean build --workspace --all-targets: $(echo "$e - $s" | bc) s" >> "$out"
echo "// touched" >> "$2"
s=$(date +%s.%N); cargo build --workspace --all-targets >/dev/null 2>&1; e=$(date +%s.%N)
echo "rebuild after editing $2: $(echo "$e - $s" | bc) s" >> "$out"
git checkout -q -- "$2"
echo "// touched" >> "$2"
s=$(date +%s.%N); cargo test --workspace --no-run > /tmp/norun.$$ 2>&1; e=$(date +%s.%N)
echo "cargo test --workspace --no-run after the same edit: $(echo "$e - $s" | bc) s" >> "$out"
echo "test binaries: $(grep -c 'Executable' /tmp/norun.$$)" >> "$out"
git checkout -q -- "$2"
du -sh target | sed 's/^/target size: /' >> "$out"
echo "// touched" >> "$2"
s=$(date +%s.%N); GJELDSBRO_REQUIRE_PG=1 cargo test --workspace > /tmp/run.$$ 2>&1; rc=$?; e=$(date +%s.%N)
echo "cargo test --workspace after the same edit (link and run, rc=$rc): $(echo "$e - $s" | bc) s" >> "$out"
git checkout -q -- "$2"
