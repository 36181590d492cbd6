#!/usr/bin/env bash
# Installs credgate as a systemd service on Debian (or any systemd distro
# with shadow's groupadd):
#
#   cargo build --profile dist --locked
#   sudo deploy/systemd/install.sh --binary target/dist/credgate \
#       --config my/credgate.toml
#   sudo systemctl daemon-reload && sudo systemctl enable --now credgate
#
# The config goes to /etc/credgate/credgate.toml, and with it every file it
# names (`credgate check-config --files` lists them: paragon.signing_key_file,
# public_key_file and ca_file; each auth.keys pem_file; policy.acl_file and
# rules_file; server.tls cert_file and key_file; cluster.ca_file), each
# under the name the config gives it:
#   * a relative path P is read from the config's own directory (where you
#     prepared the config and its files) and installed as /etc/credgate/P,
#     which is where the service resolves it;
#   * an absolute path must name a file that exists on this machine; it is
#     left where it is (it must be readable by the group `credgate`), or,
#     with --root, copied to the same path under the root.
# --key FILE and --acl FILE read paragon.signing_key_file and
# policy.acl_file from FILE instead (installed under the config's name).
# [audit] file, if set, must be in /var/log/credgate/ (the unit's
# LogsDirectory, the one place the service may write); the directory is
# made, so that the config validates before the first start.
#
# Nothing is changed until everything is checked: the arguments, the
# binary, every file the config names, and the config as it will be
# installed (`credgate check-config` on a copy of the future /etc/credgate
# in a temporary directory). A failed check leaves the machine as it was.
#
# Then:
#   1. creates the system group `credgate` (the unit's SupplementaryGroups;
#      without it the unit fails with status 216/GROUP);
#   2. installs the binary as /usr/local/bin/credgate (0755);
#   3. creates /etc/credgate (root:credgate 0750, and each directory below
#      it the config's paths need) and installs the config and its files
#      in it (root:credgate 0640): the service's dynamic user reads them
#      through the group, and nothing else can;
#   4. makes /var/log/credgate when [audit] file is set;
#   5. installs the unit as /etc/systemd/system/credgate.service.
# It never runs systemctl.
#
# For packaging and tests:
#   --root DIR (or DESTDIR=DIR): install into DIR instead of /
#     (DIR/etc/group must exist unless the accounts are skipped);
#   CREDGATE_INSTALL_SKIP_ACCOUNTS=1: create no group and set no owner
#     (files belong to whoever runs this; modes are still set), for an
#     unprivileged build root.
set -euo pipefail

die() {
  echo "install.sh: $*" >&2
  exit 64
}

ROOT=${DESTDIR:-}
BINARY=
CONFIG=
KEY=
ACL=
while [ $# -gt 0 ]; do
  case "$1" in
    --root) ROOT=${2:-}; shift 2 ;;
    --binary) BINARY=${2:-}; shift 2 ;;
    --config) CONFIG=${2:-}; shift 2 ;;
    --key) KEY=${2:-}; shift 2 ;;
    --acl) ACL=${2:-}; shift 2 ;;
    *) die "unknown argument $1" ;;
  esac
done
ROOT=${ROOT%/}
SKIP_ACCOUNTS=${CREDGATE_INSTALL_SKIP_ACCOUNTS:-}
HERE=$(cd "$(dirname "$0")" && pwd)
ETC=/etc/credgate
LOGS=/var/log/credgate

# ---- Checks: nothing below changes anything until "Install". ----

[ -n "$BINARY" ] || die "--binary is required"
[ -n "$CONFIG" ] || die "--config is required"
# A readable regular file.
readable() { [ -f "$1" ] && [ -r "$1" ]; }
{ readable "$BINARY" && [ -x "$BINARY" ]; } || die "--binary: $BINARY is not an executable file"
readable "$CONFIG" || die "--config: $CONFIG is not a readable file"
for v in KEY ACL; do
  if [ -n "${!v}" ] && ! readable "${!v}"; then
    die "--${v,,}: ${!v} is not a readable file"
  fi
done
[ -f "$HERE/credgate.service" ] || die "$HERE/credgate.service is missing"
if [ -z "$SKIP_ACCOUNTS" ]; then
  [ -f "$ROOT/etc/group" ] || die "$ROOT/etc/group does not exist"
  if ! grep -q '^credgate:' "$ROOT/etc/group"; then
    command -v groupadd >/dev/null || die "groupadd is not installed (the group credgate must be created)"
  fi
fi
CONFIG_DIR=$(cd "$(dirname "$CONFIG")" && pwd)

# The files the config names: "key<TAB>path" lines.
if ! LISTED=$("$BINARY" check-config --files --config "$CONFIG"); then
  die "cannot read the files $CONFIG names (above)"
fi

SOURCES=()   # what to install ...
TARGETS=()   # ... where, without the root
AUDIT_FILE=
KEY_USED=
ACL_USED=
while IFS=$'\t' read -r key path; do
  [ -n "$key" ] || continue
  [ -n "$path" ] || die "$key is empty"
  if [ "$key" = audit.file ]; then
    case "$path" in
      "$LOGS"/*/*|"$LOGS"/) die "$key = \"$path\": put the audit file directly in $LOGS/ (the unit's LogsDirectory)" ;;
      "$LOGS"/*) AUDIT_FILE=$path ;;
      *) die "$key = \"$path\": the service may write only in $LOGS/ (the unit's LogsDirectory, ProtectSystem=strict): set it to $LOGS/audit.jsonl, or leave it unset for the journal" ;;
    esac
    continue
  fi
  case "$path" in
    /*) source=$path; target=$path ;;
    *)
      case "/$path/" in
        */../*|*/./*) die "$key = \"$path\": a path with . or .. would leave $ETC; name the file below it" ;;
      esac
      source=$CONFIG_DIR/$path
      target=$ETC/$path
      ;;
  esac
  if [ "$key" = paragon.signing_key_file ] && [ -n "$KEY" ]; then
    source=$KEY
    KEY_USED=1
  fi
  if [ "$key" = policy.acl_file ] && [ -n "$ACL" ]; then
    source=$ACL
    ACL_USED=1
  fi
  [ "$target" != "$ETC/credgate.toml" ] || die "$key = \"$path\" is where the config itself goes"
  readable "$source" || die "$key = \"$path\": $source does not exist or is not a readable file"
  SOURCES+=("$source")
  TARGETS+=("$target")
done <<<"$LISTED"
[ -z "$KEY" ] || [ -n "$KEY_USED" ] || die "--key: $CONFIG names no paragon.signing_key_file"
[ -z "$ACL" ] || [ -n "$ACL_USED" ] || die "--acl: $CONFIG names no policy.acl_file"

# The config as it will be installed, in a copy of the future layout: its
# absolute /etc/credgate/ and /var/log/credgate/ paths moved into the copy.
STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
mkdir -p "$STAGE$ETC" "$STAGE$LOGS"
sed -e "s#\([\"']\)$ETC/#\1$STAGE$ETC/#g" -e "s#\([\"']\)$LOGS/#\1$STAGE$LOGS/#g" \
  "$CONFIG" >"$STAGE$ETC/credgate.toml"
for i in "${!SOURCES[@]}"; do
  case "${TARGETS[$i]}" in
    "$ETC"/*)
      mkdir -p "$(dirname "$STAGE${TARGETS[$i]}")"
      cp "${SOURCES[$i]}" "$STAGE${TARGETS[$i]}"
      ;;
  esac
done
if ! "$BINARY" check-config --config "$STAGE$ETC/credgate.toml" >/dev/null; then
  die "the config does not validate as it would be installed (above); nothing was changed"
fi

# ---- Install. ----

# 1. The group, unless it exists.
OWNER=()
if [ -z "$SKIP_ACCOUNTS" ]; then
  if ! grep -q '^credgate:' "$ROOT/etc/group"; then
    if [ -n "$ROOT" ]; then
      groupadd --prefix "$ROOT" --system credgate
    else
      groupadd --system credgate
    fi
  fi
  GID=$(awk -F: '$1 == "credgate" {print $3}' "$ROOT/etc/group")
  OWNER=(-o 0 -g "$GID")
fi

# 2. The binary.
install -D -m 0755 "$BINARY" "$ROOT/usr/local/bin/credgate"

# 3. Config and its files, readable by the group only; every directory
#    from /etc/credgate down to each file's.
install -d -m 0750 "${OWNER[@]}" "$ROOT$ETC"
install -m 0640 "${OWNER[@]}" "$CONFIG" "$ROOT$ETC/credgate.toml"
for i in "${!SOURCES[@]}"; do
  source=${SOURCES[$i]}
  target=${TARGETS[$i]}
  case "$target" in
    "$ETC"/*)
      dir=$(dirname "$target")
      parts=()
      while [ "$dir" != "$ETC" ]; do
        parts=("$dir" "${parts[@]}")
        dir=$(dirname "$dir")
      done
      for d in "${parts[@]}"; do
        install -d -m 0750 "${OWNER[@]}" "$ROOT$d"
      done
      if [ "$source" -ef "$ROOT$target" ]; then
        # Already in place (an absolute /etc/credgate/ path): modes only.
        chmod 0640 "$source"
        if [ -z "$SKIP_ACCOUNTS" ]; then chown "0:$GID" "$source"; fi
      else
        install -m 0640 "${OWNER[@]}" "$source" "$ROOT$target"
      fi
      ;;
    *)
      # Elsewhere: the operator's file, left in place; copied into a root.
      if [ -n "$ROOT" ]; then
        install -D -m 0640 "${OWNER[@]}" "$source" "$ROOT$target"
      fi
      ;;
  esac
done

# 4. The audit file's directory (systemd takes it over as the unit's
#    LogsDirectory at the first start).
if [ -n "$AUDIT_FILE" ]; then
  install -d -m 0750 "$ROOT$LOGS"
fi

# 5. The unit.
install -D -m 0644 "$HERE/credgate.service" "$ROOT/etc/systemd/system/credgate.service"
echo "installed; now: systemctl daemon-reload && systemctl enable --now credgate" >&2
