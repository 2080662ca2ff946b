#!/bin/sh
# Writes deploy/.env from env.example with a fresh random value for every empty *_PASSWORD, and with
# --tls-names, a certificate authority and a NATS server certificate in nats/tls/ (TLS turned on in .env).
# Each password is a letter then 48 hex digits: nats-server substitutes its password variables into
# the config as values, and one that reads as a number (1e10..., 0e12...: `openssl rand -hex` can
# start so) stops it with "variable reference ... could not be parsed".
#   deploy/setup.sh [ENV_FILE] [--force] [--tls-names NAME,NAME...]
#     --tls-names   the addresses remote nodes reach the broker by (IPs or DNS names, comma separated);
#                   the server certificate names them besides nats, localhost and 127.0.0.1
#   (default ENV_FILE deploy/.env; an existing file is kept unless --force)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
force=no
out=
tls=
while [ $# -gt 0 ]; do
  case "$1" in
    --force) force=yes ;;
    --tls-names) [ $# -ge 2 ] || { echo "setup.sh: --tls-names needs the names (e.g. --tls-names 10.0.0.5,broker.lan)" >&2; exit 2; }; tls=$2; shift ;;
    --tls-names=*) tls=${1#--tls-names=} ;;
    -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "setup.sh: unknown option $1 (see deploy/setup.sh --help)" >&2; exit 2 ;;
    *) out=$1 ;;
  esac
  shift
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
    "# GRAFT_NATS_CONFIG=nats-server-tls.conf") if [ -n "$tls" ]; then echo "GRAFT_NATS_CONFIG=nats-server-tls.conf"; else printf '%s\n' "$line"; fi ;;
    "# GRAFT_NATS_TLS_CA=/etc/graft/tls/ca.crt") if [ -n "$tls" ]; then echo "GRAFT_NATS_TLS_CA=/etc/graft/tls/ca.crt"; else printf '%s\n' "$line"; fi ;;
    *) printf '%s\n' "$line" ;;
  esac
done < "$here/env.example" > "$tmp"
if [ -n "$tls" ]; then
  command -v openssl >/dev/null 2>&1 || { rm -f "$tmp"; echo "setup.sh: --tls-names needs openssl" >&2; exit 1; }
  dir="$here/nats/tls"
  mkdir -p "$dir"
  san="DNS:nats,DNS:localhost,IP:127.0.0.1"
  for name in $(echo "$tls" | tr ',' ' '); do
    case "$name" in
      *[!0-9.]*) case "$name" in *:*) san="$san,IP:$name" ;; *) san="$san,DNS:$name" ;; esac ;;
      *) san="$san,IP:$name" ;;
    esac
  done
  openssl req -x509 -newkey rsa:2048 -nodes -days 825 -subj /CN=graft-ca -keyout "$dir/ca.key" -out "$dir/ca.crt" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj /CN=nats -keyout "$dir/server.key" -out "$dir/server.csr" 2>/dev/null
  printf 'subjectAltName=%s\n' "$san" > "$dir/san.ext"
  openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial -days 825 -extfile "$dir/san.ext" -out "$dir/server.crt" 2>/dev/null
  rm -f "$dir/server.csr" "$dir/san.ext"
  echo "wrote $dir/ca.crt, server.crt and server.key (names: $san); give remote nodes ca.crt" >&2
fi
mv "$tmp" "$out"
echo "wrote $out (mode 600): every password set; the command line's is GRAFT_CLI_PASSWORD" >&2
