#!/usr/bin/env bash
# Regenerates blocklist-en.txt from the npm package naughty-words (the LDNOOBW list, CC-BY-4.0):
# the English entries, lower-cased, sorted, one per line. Pinned by version and tarball hash.
set -euo pipefail
cd "$(dirname "$0")"
version=1.2.0
sha256=c34b05e10a97ec7b9e0c3dd91d09888187c0f08d0812eaea79679795585b217e
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "naughty-words@$version" >/dev/null)
echo "$sha256  $work/naughty-words-$version.tgz" | sha256sum -c --quiet
tar xzf "$work/naughty-words-$version.tgz" -C "$work"
python3 - "$work/package/en.json" > blocklist-en.txt <<'PY'
import json, sys
words = sorted({w.strip().lower() for w in json.load(open(sys.argv[1], encoding="utf-8")) if w.strip()})
print("\n".join(words))
PY
echo "blocklist-en.txt: $(wc -l < blocklist-en.txt) entries from naughty-words $version"
