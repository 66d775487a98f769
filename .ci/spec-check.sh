#!/usr/bin/env bash
# spec/genesys/ is the repository's copy of ../shared/genesys/ (see spec/genesys/PROVENANCE.md).
# When ../shared/genesys/ is beside the repository: every copied file must equal its original;
# files that arrived there but are not copied are listed, not failed (copy what the code uses).
set -euo pipefail
cd "$(dirname "$0")/.."

spec=spec/genesys
shared=../shared/genesys
if [ ! -d "$shared" ]; then
  echo "spec-check: no $shared beside the repository; $spec stands alone"
  exit 0
fi

status=0
while IFS= read -r -d '' f; do
  rel=${f#"$spec"/}
  [ "$rel" = PROVENANCE.md ] && continue
  if [ ! -f "$shared/$rel" ]; then
    echo "spec-check: $spec/$rel is not in $shared (removed or renamed there?)" >&2
    status=1
  elif ! cmp -s "$f" "$shared/$rel"; then
    echo "spec-check: $spec/$rel differs from $shared/$rel (cp it, review the diff, update PROVENANCE.md)" >&2
    status=1
  fi
done < <(find "$spec" -type f -print0 | sort -z)

while IFS= read -r -d '' f; do
  rel=${f#"$shared"/}
  [ -f "$spec/$rel" ] || echo "spec-check: note: $shared/$rel is not copied into $spec (new fact?)"
done < <(find "$shared" -type f -print0 | sort -z)

[ "$status" = 0 ] && echo "spec-check: $spec equals $shared"
exit "$status"
