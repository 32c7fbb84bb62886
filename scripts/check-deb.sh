#!/usr/bin/env bash
# Builds the Debian package (make deb), installs it on this machine with
# apt, checks what it made and that it started and enabled nothing, runs
# ytkeep doctor against the installed tree, installs it again over an
# edited configuration, removes it, purges it without and then with the
# users' and the videos' removal asked, and checks after each step what
# is left. As root, on a machine without ytkeep; it leaves none of it
# behind, also when a check fails. CI runs it under
# flock /tmp/ytkeep-uids.lock (other tests use user ids of the same range).
set -euo pipefail
cd "$(dirname "$0")/.."
[[ $(id -u) -eq 0 ]] || { echo "check-deb.sh: run as root" >&2; exit 1; }
start=$SECONDS
version=$(cat VERSION)
deb="dist/ytkeep_${version}_amd64.deb"
export DEBIAN_FRONTEND=noninteractive
fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok: $*"; }

# The users and groups sysusers.d makes, and the directories tmpfiles.d
# makes (read from the files the package ships).
users=$(awk '$1=="u"{print $2}' deploy/sysusers.d/*.conf)
groups=$(awk '$1=="g"{print $2}' deploy/sysusers.d/*.conf)
dirs=$(awk '$1=="d"{print $2}' deploy/tmpfiles.d/*.conf)
units="ytkeep-receiver.service ytkeep-worker.service ytkeep-downloader.service ytkeep-downloader.socket ytkeep-courier.service"

installed() { [[ "$(dpkg-query -W -f '${db:Status-Status}' ytkeep 2>/dev/null)" == installed ]]; }
known() { dpkg-query -W ytkeep >/dev/null 2>&1; } # installed, or removed with its conffiles
any_user() { for u in $users; do getent passwd "$u" >/dev/null && return 0; done; return 1; }
any_group() { for g in $groups; do getent group "$g" >/dev/null && return 0; done; return 1; }
# Links an enabled unit leaves under /etc/systemd/system.
unit_links() { find /etc/systemd/system -name 'ytkeep-*' 2>/dev/null; }
# ytkeep's processes (none may run: nothing was started).
procs() { ps -eo pid=,comm= | awk '$2 ~ /^ytkeep-/' || true; }

# Whatever happened, this machine ends without ytkeep.
cleanup() {
	local rc=$?
	if known; then
		YTKEEP_PURGE_USERS=1 YTKEEP_PURGE_DOWNLOADS=1 dpkg --purge ytkeep >/dev/null 2>&1 || true
	fi
	if any_user || any_group; then
		for u in ytkeep-work $users; do getent passwd "$u" >/dev/null && userdel "$u" 2>/dev/null; done
		for g in $groups; do getent group "$g" >/dev/null && groupdel "$g" 2>/dev/null; done
	fi
	rm -rf /etc/ytkeep /var/spool/ytkeep /var/lib/ytkeep /run/ytkeep-downloader
	rm -f "$tmp" /tmp/ytkeep-check-deb.log
	((rc == 0)) || echo "check-deb.sh failed; ytkeep purged from this machine" >&2
	exit "$rc"
}

# A clean machine to start from: what is left at the end is then ours.
known && fail "ytkeep is installed here already (dpkg -l ytkeep): this check needs a machine without it"
any_user && fail "ytkeep's users exist here already"
any_group && fail "ytkeep's groups exist here already"
for d in /etc/ytkeep /var/spool/ytkeep /var/lib/ytkeep; do
	[[ ! -e $d ]] || fail "$d exists here already"
done
[[ -z "$(unit_links)" ]] || fail "ytkeep's units are linked here already: $(unit_links)"
tmp=$(mktemp)
trap cleanup EXIT

make --no-print-directory deb >/dev/null
[[ -f "$deb" ]] || fail "make deb did not make $deb"
size=$(stat -c %s "$deb")
ok "make deb built $deb ($((size / 1024 / 1024)) MiB, $(dpkg-deb -f "$deb" Installed-Size) KiB installed; Depends: $(dpkg-deb -f "$deb" Depends))"
# Every path of the package, for the last check.
dpkg-deb -c "$deb" | awk '{print $6}' | sed 's#^\.##; s#/$##' | grep -v '^$' >"$tmp"

# Install.
apt-get install -y -q "./$deb" >/tmp/ytkeep-check-deb.log 2>&1 || { cat /tmp/ytkeep-check-deb.log >&2; fail "apt-get install"; }
installed || fail "ytkeep is not installed after apt-get install"
grep -q "nothing runs yet" /tmp/ytkeep-check-deb.log || fail "postinst did not tell the admin what comes next"
for f in /usr/bin/ytkeep /usr/bin/ytkeep-{receiver,worker,downloader,courier}; do
	[[ -x $f ]] || fail "$f is not installed"
done
for u in $units; do [[ -f /usr/lib/systemd/system/$u ]] || fail "unit $u is not installed"; done
for u in $users; do getent passwd "$u" >/dev/null || fail "user $u was not made"; done
for g in $groups; do getent group "$g" >/dev/null || fail "group $g was not made"; done
for d in $dirs; do [[ -d $d ]] || fail "directory $d was not made"; done
[[ "$(stat -c '%a %U %G' /etc/ytkeep/ytkeep.toml)" == "640 root ytkeep-spool" ]] || fail "ytkeep.toml: $(stat -c '%a %U %G' /etc/ytkeep/ytkeep.toml), want 640 root ytkeep-spool"
cmp -s /etc/ytkeep/ytkeep.toml ytkeep.example.toml || fail "ytkeep.toml is not the example configuration"
for s in app_token signing_secret alert_webhook bot_token; do
	[[ "$(stat -c '%a %U %G %s' "/etc/ytkeep/$s")" == "400 root root 0" ]] || fail "/etc/ytkeep/$s: $(stat -c '%a %U %G %s' "/etc/ytkeep/$s"), want an empty file, 400 root root"
done
ok "installed: programs in /usr/bin, units in /usr/lib/systemd/system, users $(echo $users), the tree, ytkeep.toml 0640 root:ytkeep-spool, four empty secrets' files 0400 root"
# Nothing enabled, nothing started.
[[ -z "$(unit_links)" ]] || fail "the package enabled units: $(unit_links)"
for u in $units; do
	state=$(systemctl is-enabled "$u" 2>/dev/null || true)
	[[ $state == disabled ]] || fail "$u is $state after the install, want disabled"
done
[[ -z "$(procs)" ]] || fail "ytkeep processes run after the install: $(procs)"
ok "nothing enabled (systemctl is-enabled: disabled, no links) and nothing running"

# ytkeep doctor against the installed tree. Before the admin pastes the
# Slack app's app-level token (the example configuration is in Socket
# Mode) the receiver cannot start, and doctor must say so: that FAIL and
# no other. Any other FAIL is a real problem of the package or this
# machine.
out=$(ytkeep doctor -config /etc/ytkeep/ytkeep.toml 2>&1) && fail "doctor passed without an app-level token:"$'\n'"$out"
fails=$(grep '^\[FAIL\]' <<<"$out" || true)
if [[ "$fails" != "[FAIL] app-level token /etc/ytkeep/app_token is empty: "* || $(wc -l <<<"$fails") != 1 ]]; then
	echo "$out" >&2
	fail "doctor on the unconfigured tree: want exactly one FAIL, the empty app-level token"
fi
ok "doctor on the unconfigured install: one FAIL, the empty app-level token; $(grep -c '^\[OK  \]' <<<"$out") OK, $(grep -c '^\[WARN\]' <<<"$out") WARN"
# The admin pastes it (a token of the right form): doctor passes.
printf 'xapp-1-A0123456789-1234567890123-%s\n' "$(printf '0%.0s' {1..64})" >/etc/ytkeep/app_token
out=$(ytkeep doctor -config /etc/ytkeep/ytkeep.toml 2>&1) || { echo "$out" >&2; fail "doctor with an app-level token"; }
grep -q '^\[OK  \] app-level token /etc/ytkeep/app_token is private' <<<"$out" || { echo "$out" >&2; fail "doctor did not check the app-level token"; }
grep -q '^\[OK  \] spool /var/spool/ytkeep and downloads /var/lib/ytkeep/downloads have the documented owners and modes' <<<"$out" ||
	{ echo "$out" >&2; fail "doctor did not find the tree as documented"; }
ok "doctor with the app-level token pasted: no FAIL (the tree and the configuration as documented)"

# Installed again over an admin's configuration and secrets (and a
# configuration an editor left 0644, root's group): their content stays;
# the configuration's owner and mode are put right.
echo "# the admin's" >>/etc/ytkeep/ytkeep.toml
chmod 0644 /etc/ytkeep/ytkeep.toml && chgrp root /etc/ytkeep/ytkeep.toml
sums=$(cd /etc/ytkeep && sha256sum ytkeep.toml app_token signing_secret alert_webhook bot_token)
apt-get install --reinstall -y -q "./$deb" >/tmp/ytkeep-check-deb.log 2>&1 || { cat /tmp/ytkeep-check-deb.log >&2; fail "apt-get install --reinstall"; }
[[ "$(cd /etc/ytkeep && sha256sum ytkeep.toml app_token signing_secret alert_webhook bot_token)" == "$sums" ]] ||
	fail "installing again changed the configuration or a secret"
[[ "$(stat -c '%a %U %G' /etc/ytkeep/ytkeep.toml)" == "640 root ytkeep-spool" ]] || fail "installing again left ytkeep.toml $(stat -c '%a %U %G' /etc/ytkeep/ytkeep.toml)"
[[ "$(stat -c '%a %U' /etc/ytkeep/app_token)" == "400 root" ]] || fail "installing again changed app_token's mode"
[[ -z "$(unit_links)" && -z "$(procs)" ]] || fail "installing again enabled or started something"
ok "installed again: the configuration and the secrets kept byte for byte, ytkeep.toml back to 0640 root:ytkeep-spool, nothing enabled or started"

# The admin enables the units (systemd does not run here: the links
# only), then removes the package: the units are disabled, the programs
# gone; the configuration, the secrets, the spool and the users stay.
systemctl enable $units >/dev/null 2>&1 || fail "systemctl enable"
[[ -n "$(unit_links)" ]] || fail "systemctl enable made no links: the check below would prove nothing"
apt-get remove -y -q ytkeep >/tmp/ytkeep-check-deb.log 2>&1 || { cat /tmp/ytkeep-check-deb.log >&2; fail "apt-get remove"; }
installed && fail "ytkeep is still installed after apt-get remove"
[[ -z "$(unit_links)" ]] || fail "apt-get remove left the units enabled: $(unit_links)"
[[ ! -e /usr/bin/ytkeep-receiver && ! -e /usr/lib/systemd/system/ytkeep-receiver.service ]] || fail "apt-get remove left programs or units"
[[ -f /etc/ytkeep/ytkeep.toml && -s /etc/ytkeep/app_token && -d /var/spool/ytkeep/incoming ]] || fail "apt-get remove deleted the configuration, a secret or the spool"
getent passwd ytkeep-recv >/dev/null || fail "apt-get remove deleted the users"
ok "apt-get remove: units disabled, programs and units gone; configuration, secrets, spool and users kept"

# Purge, nothing more asked: configuration, secrets and spool go; the
# users and a stored video stay.
printf 'video' >/var/lib/ytkeep/downloads/dQw4w9WgXcQ-best.mp4
chown ytkeep-work:ytkeep-media /var/lib/ytkeep/downloads/dQw4w9WgXcQ-best.mp4
apt-get purge -y -q ytkeep >/tmp/ytkeep-check-deb.log 2>&1 || { cat /tmp/ytkeep-check-deb.log >&2; fail "apt-get purge"; }
known && fail "ytkeep is still known to dpkg after apt-get purge"
for d in /etc/ytkeep /var/spool/ytkeep /var/lib/ytkeep/root; do [[ ! -e $d ]] || fail "apt-get purge left $d"; done
left=$(find /var/lib/ytkeep -mindepth 1 -maxdepth 1 ! -name downloads)
[[ -z "$left" ]] || fail "apt-get purge left in /var/lib/ytkeep: $left"
[[ -f /var/lib/ytkeep/downloads/dQw4w9WgXcQ-best.mp4 ]] || fail "apt-get purge deleted a stored video without YTKEEP_PURGE_DOWNLOADS=1"
for u in $users; do getent passwd "$u" >/dev/null || fail "apt-get purge deleted user $u without YTKEEP_PURGE_USERS=1"; done
grep -q "YTKEEP_PURGE_USERS=1" /tmp/ytkeep-check-deb.log || fail "apt-get purge did not say how to delete the users"
ok "apt-get purge: /etc/ytkeep, the spool and /var/lib/ytkeep but the videos gone; users, groups and the stored video kept, as documented"

# Installed again (the users and the videos are found), then purged with
# both asked: nothing of ytkeep is left.
apt-get install -y -q "./$deb" >/tmp/ytkeep-check-deb.log 2>&1 || { cat /tmp/ytkeep-check-deb.log >&2; fail "apt-get install after the purge"; }
[[ -f /var/lib/ytkeep/downloads/dQw4w9WgXcQ-best.mp4 && -f /etc/ytkeep/ytkeep.toml ]] || fail "installing after a purge lost the video or made no configuration"
YTKEEP_PURGE_USERS=1 YTKEEP_PURGE_DOWNLOADS=1 apt-get purge -y -q ytkeep >/tmp/ytkeep-check-deb.log 2>&1 ||
	{ cat /tmp/ytkeep-check-deb.log >&2; fail "apt-get purge with YTKEEP_PURGE_USERS=1 YTKEEP_PURGE_DOWNLOADS=1"; }
known && fail "ytkeep is still known to dpkg"
left=()
while read -r p; do
	# Directories the package shares with the system (/usr/bin, /etc)
	# stay; its own files and directories must not.
	[[ -e $p && ! ( -d $p && $p != */ytkeep && $p != */ytkeep/* ) ]] && left+=("$p")
done <"$tmp"
for d in $dirs /etc/ytkeep /var/spool/ytkeep /var/lib/ytkeep /run/ytkeep-downloader; do [[ -e $d ]] && left+=("$d"); done
for u in $users; do getent passwd "$u" >/dev/null && left+=("user $u"); done
for g in $groups; do getent group "$g" >/dev/null && left+=("group $g"); done
[[ -n "$(unit_links)" ]] && left+=($(unit_links))
# Anything else of that name where the package or its scripts write (not
# /etc/apt, where scripts/ensure-deps.sh adds bookworm-backports for
# yt-dlp, which is not the package's).
found() { find /etc /usr /var/lib /var/spool /var/cache/apparmor /run -xdev -path /etc/apt -prune -o -name 'ytkeep*' -print 2>/dev/null; }
[[ -n "$(found)" ]] && left+=($(found))
((${#left[@]} == 0)) || fail "left after the purge: ${left[*]}"
ok "apt-get purge with YTKEEP_PURGE_USERS=1 YTKEEP_PURGE_DOWNLOADS=1: no file of the package, no /etc/ytkeep, spool, /var/lib/ytkeep, user, group or unit link left"
echo "ok: check-deb passed in $((SECONDS - start)) s"
