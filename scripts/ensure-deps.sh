#!/usr/bin/env bash
# Installs the Debian packages ytkeep needs to run its demo and tests, or,
# when not root, prints the exact command and fails.
set -euo pipefail

packages=(yt-dlp ffmpeg ca-certificates)
case "${1:-}" in
--test) packages+=(apparmor systemd) ;;
# The real-systemd test: a Debian root file system and a container.
--systemd) packages+=(mmdebstrap systemd-container) ;;
esac

missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

cmd="apt-get update && apt-get install -y --no-install-recommends ${missing[*]}"
if [[ $(id -u) -ne 0 ]]; then
	echo "ytkeep needs: ${missing[*]}. Install them as root:" >&2
	echo "  sudo sh -c '$cmd'" >&2
	exit 1
fi
echo "installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
