#!/usr/bin/env bash
# System (Debian) packages apqopt needs. Always: the Fashion-MNIST dataset (idx .gz files) for the
# supernet. With --test: also the PostgreSQL server (the live-study tests start a private one) and
# Chromium (the dashboard's end-to-end browser test). Installs only what is missing; sudo when not root.
set -euo pipefail
PKGS="dataset-fashion-mnist"
if [ "${1:-}" = "--test" ]; then PKGS="$PKGS postgresql chromium"; fi
missing=""
for p in $PKGS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing
fi
