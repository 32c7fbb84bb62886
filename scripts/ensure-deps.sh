#!/usr/bin/env bash
# Installs the Debian packages ytkeep needs to run its demo and tests, or,
# when not root, prints the exact commands and fails.
#
# yt-dlp must have --no-plugin-dirs (2025.01.15 or newer): Debian 12's own
# 2023.03.04 lacks it, so on Debian 12 yt-dlp comes from bookworm-backports,
# which this script enables from the mirror the system already uses.
set -euo pipefail

packages=(ffmpeg ca-certificates)
case "${1:-}" in
--test) packages+=(apparmor systemd) ;;
# The real-systemd test: a Debian root file system and a container.
--systemd) packages+=(mmdebstrap systemd-container) ;;
esac

missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
ytdlp_ok() { command -v yt-dlp >/dev/null && yt-dlp --help 2>/dev/null | grep -q -- '--no-plugin-dirs'; }
need_ytdlp=0
ytdlp_ok || need_ytdlp=1
[[ ${#missing[@]} -eq 0 && $need_ytdlp -eq 0 ]] && exit 0

codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
backports=/etc/apt/sources.list.d/ytkeep-backports.sources
if [[ $(id -u) -ne 0 ]]; then
	echo "ytkeep needs: ${missing[*]}$([[ $need_ytdlp -eq 1 ]] && echo " yt-dlp (with --no-plugin-dirs)"). As root:" >&2
	[[ ${#missing[@]} -eq 0 ]] || echo "  apt-get update && apt-get install -y --no-install-recommends ${missing[*]}" >&2
	if [[ $need_ytdlp -eq 1 && $codename == bookworm ]]; then
		echo "  enable bookworm-backports (scripts/ensure-deps.sh does, as root), then" >&2
		echo "  apt-get install -y -t bookworm-backports yt-dlp" >&2
	elif [[ $need_ytdlp -eq 1 ]]; then
		echo "  apt-get install -y yt-dlp   (or a current yt-dlp release)" >&2
	fi
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
ytdlp_target=()
if [[ $need_ytdlp -eq 1 && $codename == bookworm && ! -e $backports ]]; then
	# The mirror of the system's own Debian sources (deb822 or one-line).
	uri=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
	[[ -n $uri ]] || uri=$(awk '$1=="deb" && $3=="bookworm" {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
	[[ -n $uri ]] || { echo "cannot find the Debian mirror in use to enable bookworm-backports" >&2; exit 1; }
	printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' "$uri" >"$backports"
	echo "enabled bookworm-backports ($backports)"
fi
[[ $need_ytdlp -eq 1 && $codename == bookworm ]] && ytdlp_target=(-t bookworm-backports)
echo "installing ${missing[*]}$([[ $need_ytdlp -eq 1 ]] && echo " yt-dlp")"
apt-get update -qq
[[ ${#missing[@]} -eq 0 ]] || apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
if [[ $need_ytdlp -eq 1 ]]; then
	apt-get install -y -qq --no-install-recommends "${ytdlp_target[@]}" yt-dlp >/dev/null
	ytdlp_ok || { echo "the installed yt-dlp still lacks --no-plugin-dirs" >&2; exit 1; }
fi
