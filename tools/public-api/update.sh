#!/usr/bin/env bash
# Brings each tracked library's PublicAPI.Unshipped.txt up to date with its code: builds the
# libraries with the public API analyzer's findings as warnings, adds every public symbol that is
# missing from the listing (RS0016) and removes every listed one that is gone (RS0017). Review the
# diff: it is the change to the public API. At a release, move the lines of PublicAPI.Unshipped.txt
# to PublicAPI.Shipped.txt. Usage: tools/public-api/update.sh [-c Configuration] [PROJECT_FOLDER...]
# (default: every tracked library; a library's references must have been built).
set -euo pipefail
cd "$(dirname "$0")/../.."
config=Release
if [ "${1:-}" = "-c" ]; then config=$2; shift 2; fi
projects=(runtime/GhmGen.Runtime runtime/GhmGen.Runtime.Gpu runtime/GhmGen.Distributed models/GhmGen.Models)
if [ $# -gt 0 ]; then projects=("${@%/}"); fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for project in "${projects[@]}"; do
  # --no-incremental: the analyzer only reports on files it compiles.
  dotnet build "$project" -c "$config" --no-incremental -p:TreatWarningsAsErrors=false \
    -p:WarningsAsErrors= -p:BuildProjectReferences=false -v:q -nologo >"$log" 2>&1 || { cat "$log" >&2; exit 1; }
  csproj="[$(pwd)/$project/$(basename "$project").csproj]"
  unshipped=$project/PublicAPI.Unshipped.txt
  # Findings of this project only, as the symbol text the analyzer expects.
  added=$(grep -F "warning RS0016" "$log" | grep -F "$csproj" | sed -E "s/.*warning RS0016: Symbol '(.*)' is not part of the declared (public )?API.*/\1/" | sort -u || true)
  removed=$(grep -F "warning RS0017" "$log" | grep -F "$csproj" | sed -E "s/.*warning RS0017: Symbol '(.*)' is part of the declared API, but is either not public or could not be found.*/\1/" | sort -u || true)
  { head -n 1 "$unshipped"
    tail -n +2 "$unshipped" | { if [ -n "$removed" ]; then grep -vxF -f <(printf '%s\n' "$removed"); else cat; fi; } || true
    if [ -n "$added" ]; then printf '%s\n' "$added"; fi
  } | { read -r first; echo "$first"; LC_ALL=C sort -u; } >"$unshipped.new"
  mv "$unshipped.new" "$unshipped"
  echo "$project: $(printf '%s' "$added" | grep -c . || true) added, $(printf '%s' "$removed" | grep -c . || true) removed"
done
