#!/bin/sh
# Writes deploy/.env from env.example with a fresh random value for every empty *_PASSWORD.
# Each is a letter then 48 hex digits: nats-server substitutes its password variables into the
# config as values, and one that reads as a number (1e10..., 0e12...: `openssl rand -hex` can start
# so) stops it with "variable reference ... could not be parsed".
#   deploy/setup.sh [ENV_FILE]       (default deploy/.env; an existing file is kept unless --force)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
force=no
out=
for arg in "$@"; do
  case "$arg" in
    --force) force=yes ;;
    -h|--help) sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "setup.sh: unknown option $arg (see deploy/setup.sh --help)" >&2; exit 2 ;;
    *) out=$arg ;;
  esac
done
out=${out:-$here/.env}
if [ -e "$out" ] && [ "$force" != yes ]; then
  echo "setup.sh: $out exists; keeping it (pass --force to write a new one with new passwords)" >&2
  exit 1
fi
secret() { printf 'g%s' "$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')"; }
tmp="$out.tmp.$$"
umask 077
while IFS= read -r line || [ -n "$line" ]; do
  case "$line" in
    *_PASSWORD=) printf '%s%s\n' "$line" "$(secret)" ;;
    *) printf '%s\n' "$line" ;;
  esac
done < "$here/env.example" > "$tmp"
mv "$tmp" "$out"
echo "wrote $out (mode 600): every password set; the command line's is GRAFT_CLI_PASSWORD" >&2
