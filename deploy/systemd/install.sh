#!/usr/bin/env bash
# Installs credgate as a systemd service on Debian (or any systemd distro
# with shadow's groupadd):
#
#   sudo deploy/systemd/install.sh --binary target/release/credgate \
#       --config my-credgate.toml --key paragon-signing.pem [--acl acl.toml]
#   sudo systemctl enable --now credgate
#
# What it does (each step is also what the README's runbook says):
#   1. creates the system group `credgate` (the unit's SupplementaryGroups;
#      without it the unit fails with status 216/GROUP);
#   2. installs the binary as /usr/local/bin/credgate (0755);
#   3. creates /etc/credgate (root:credgate 0750) and installs the config
#      and keys in it (root:credgate 0640): the service's dynamic user reads
#      them through the group, and nothing else can;
#   4. validates the installed config with `credgate check-config` (as the
#      unit does before every start);
#   5. installs the unit as /etc/systemd/system/credgate.service.
#
# --root DIR installs into DIR instead of / (DIR/etc/group must exist):
# for packaging, and for the test that runs these steps (tests/deploy.rs).
set -euo pipefail

ROOT=
BINARY=
CONFIG=
KEY=
ACL=
while [ $# -gt 0 ]; do
  case "$1" in
    --root) ROOT=$2; shift 2 ;;
    --binary) BINARY=$2; shift 2 ;;
    --config) CONFIG=$2; shift 2 ;;
    --key) KEY=$2; shift 2 ;;
    --acl) ACL=$2; shift 2 ;;
    *) echo "install.sh: unknown argument $1" >&2; exit 64 ;;
  esac
done
for v in BINARY CONFIG KEY; do
  [ -n "${!v}" ] || { echo "install.sh: --${v,,} is required" >&2; exit 64; }
done
HERE=$(cd "$(dirname "$0")" && pwd)

# 1. The group, unless it exists.
if ! grep -q '^credgate:' "$ROOT/etc/group"; then
  if [ -n "$ROOT" ]; then
    groupadd --prefix "$ROOT" --system credgate
  else
    groupadd --system credgate
  fi
fi
GID=$(awk -F: '$1 == "credgate" {print $3}' "$ROOT/etc/group")

# 2. The binary.
install -D -m 0755 "$BINARY" "$ROOT/usr/local/bin/credgate"

# 3. Config and keys, readable by the group only.
install -d -m 0750 -o 0 -g "$GID" "$ROOT/etc/credgate"
install -m 0640 -o 0 -g "$GID" "$CONFIG" "$ROOT/etc/credgate/credgate.toml"
install -m 0640 -o 0 -g "$GID" "$KEY" "$ROOT/etc/credgate/paragon-signing.pem"
if [ -n "$ACL" ]; then
  install -m 0640 -o 0 -g "$GID" "$ACL" "$ROOT/etc/credgate/acl.toml"
fi

# 4. The config as installed must validate (relative paths resolve against
#    /etc/credgate, as for the service).
"$ROOT/usr/local/bin/credgate" check-config --config "$ROOT/etc/credgate/credgate.toml" >/dev/null

# 5. The unit.
install -D -m 0644 "$HERE/credgate.service" "$ROOT/etc/systemd/system/credgate.service"
echo "installed; now: systemctl daemon-reload && systemctl enable --now credgate" >&2
