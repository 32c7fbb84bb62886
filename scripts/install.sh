#!/usr/bin/env bash
# Installs ytkeep from this source tree the one way it is installed
# anywhere: builds the Debian package (make deb) and installs it with apt,
# which brings its dependencies. Run as root (make install). What the
# package does (users, tree, configuration and secrets' files when
# missing; nothing enabled or started): deploy/deb/postinst and README,
# "Install on a server".
set -euo pipefail
cd "$(dirname "$0")/.."
[[ $(id -u) -eq 0 ]] || { echo "install.sh: run as root" >&2; exit 1; }
"${MAKE:-make}" --no-print-directory deb
deb="dist/ytkeep_$(cat VERSION)_amd64.deb"
# --reinstall: the same version again (a rebuilt tree) is installed too.
# apt-get wants a path, not a bare name, for a local file.
apt-get install --reinstall -y "./$deb"
