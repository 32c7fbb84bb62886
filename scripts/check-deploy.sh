#!/usr/bin/env bash
# Checks deploy/: the systemd units score at most 1.0 in
# `systemd-analyze security`, the AppArmor profiles compile, and (as root)
# sysusers.d and tmpfiles.d build the tree with the right owners and modes
# in a scratch root. Prints every figure; fails on the first problem.
set -euo pipefail
cd "$(dirname "$0")/../deploy"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

for unit in systemd/*.service; do
	if ! systemd-analyze security --offline=true --threshold=10 "$unit" >"$tmp/out" 2>&1; then
		grep '✗' "$tmp/out" || true
		tail -1 "$tmp/out"
		echo "FAIL: $unit scores above 1.0" >&2
		exit 1
	fi
	echo "ok: $(tail -1 "$tmp/out" | sed 's/→ //')"
done
# The threshold must be able to fail: a bare unit scores far above 1.0.
printf '[Service]\nExecStart=/bin/true\n' >"$tmp/weak.service"
if systemd-analyze security --offline=true --threshold=10 "$tmp/weak.service" >/dev/null 2>&1; then
	echo "FAIL: the exposure threshold accepted an unhardened unit" >&2
	exit 1
fi
echo "ok: an unhardened unit is refused by the same check"
# Both units report abnormal ends (seccomp kills, crashes) to the admins.
for d in receiver worker; do
	grep -qx "ExecStopPost=/usr/local/bin/ytkeep-$d -config /etc/ytkeep/ytkeep.toml -exit-alert" "systemd/ytkeep-$d.service" ||
		{ echo "FAIL: ytkeep-$d.service has no exit alert (ExecStopPost=)" >&2; exit 1; }
done
echo "ok: both units alert the admins when the daemon is killed or fails (ExecStopPost=)"
# The downloader gets its configuration from systemd on standard input:
# its user cannot read the file (0640, root:ytkeep-spool), and the file is
# not in its root; its log still goes to the journal.
dl=systemd/ytkeep-downloader.service
for line in "ExecStart=/usr/local/bin/ytkeep-downloader -config -" "StandardInput=file:/etc/ytkeep/ytkeep.toml" \
	"StandardOutput=journal" "StandardError=journal"; do
	grep -qx "$line" "$dl" || { echo "FAIL: $dl must have the line $line" >&2; exit 1; }
done
if grep -E '^(BindPaths|BindReadOnlyPaths)=' "$dl" | grep -q 'ytkeep\.toml'; then
	echo "FAIL: $dl binds the configuration into its root: its downloads could read it" >&2; exit 1
fi
echo "ok: the downloader's configuration comes on standard input (StandardInput=file:, output to the journal), not bound into its root"
# The receiver gets the Slack app's secrets from systemd, both modes'
# (it reads only its mode's; install.sh makes each file, empty). The
# receiver's AppArmor profile lets it read each one; the worker's and the
# downloader's deny them.
rc=systemd/ytkeep-receiver.service
for cred in app_token signing_secret alert_webhook; do
	grep -qx "LoadCredential=$cred:/etc/ytkeep/$cred" "$rc" || { echo "FAIL: $rc must have the line LoadCredential=$cred:/etc/ytkeep/$cred" >&2; exit 1; }
	[[ $(grep -Ec "^ *(/etc/ytkeep/|/\{,var/\}run/credentials/ytkeep-receiver\.service/)\{([a-z_]+,)*$cred(,[a-z_]+)*\} r,$" apparmor/ytkeep-receiver) == 2 ]] ||
		{ echo "FAIL: apparmor/ytkeep-receiver must let the receiver read $cred both in /etc/ytkeep and as a credential" >&2; exit 1; }
	for p in apparmor/ytkeep-worker apparmor/ytkeep-downloader; do
		grep -Eq "^ *deny /etc/ytkeep/\{([a-z_]+,)*$cred(,[a-z_]+)*\} rwx,$" "$p" || { echo "FAIL: $p does not deny /etc/ytkeep/$cred" >&2; exit 1; }
	done
done
if [[ $(grep -c '^LoadCredential=' "$rc") != 3 ]]; then
	echo "FAIL: $rc loads credentials this script does not check:" >&2; grep '^LoadCredential=' "$rc" >&2; exit 1
fi
echo "ok: the receiver loads app_token, signing_secret and alert_webhook from /etc/ytkeep (LoadCredential=); AppArmor lets it read them and denies them to the worker and the downloader"

for profile in apparmor/*; do
	apparmor_parser -Q -K "$profile" 2>"$tmp/err" || { cat "$tmp/err" >&2; echo "FAIL: $profile" >&2; exit 1; }
	echo "ok: AppArmor profile $(basename "$profile") compiles (not enforced: this kernel has no AppArmor)"
done

# make install lays out every file (DESTDIR: copies only).
if [[ -x ../bin/ytkeep-receiver ]]; then
	DESTDIR="$tmp/dest" ../scripts/install.sh
	for f in usr/local/bin/ytkeep-receiver usr/local/bin/ytkeep-worker usr/local/bin/ytkeep-downloader usr/local/bin/ytkeep \
		etc/systemd/system/ytkeep-worker.service etc/systemd/system/ytkeep-downloader.service etc/systemd/system/ytkeep-downloader.socket \
		etc/sysusers.d/ytkeep.conf etc/tmpfiles.d/ytkeep.conf etc/apparmor.d/ytkeep-downloader etc/apparmor.d/ytkeep-ytdlp etc/ytkeep/ytkeep.toml \
		usr/share/doc/ytkeep/manifest-socket.json usr/share/doc/ytkeep/manifest-http.json; do
		[[ -e "$tmp/dest/$f" ]] || { echo "FAIL: install did not create /$f" >&2; exit 1; }
	done
	# The secrets' files, empty until the admin pastes them: each must
	# exist, or systemd does not start the receiver (LoadCredential=).
	for f in app_token signing_secret alert_webhook; do
		[[ -f "$tmp/dest/etc/ytkeep/$f" ]] || { echo "FAIL: install did not create /etc/ytkeep/$f" >&2; exit 1; }
		[[ "$(stat -c %a "$tmp/dest/etc/ytkeep/$f")" == 400 ]] || { echo "FAIL: the installed $f file is not 0400" >&2; exit 1; }
	done
	# Not for others: the downloader's user is in neither root's group nor
	# the spool's (which install.sh gives it outside DESTDIR).
	[[ "$(stat -c %a "$tmp/dest/etc/ytkeep/ytkeep.toml")" == 640 ]] || { echo "FAIL: the installed ytkeep.toml is not 0640" >&2; exit 1; }
	echo "ok: make install lays out binaries, units, users, tree, profiles and config"
fi

if [[ $(id -u) -ne 0 ]]; then
	echo "SKIPPED (not root): sysusers.d/tmpfiles.d check" >&2
	[[ -z "${CI:-}" ]] || { echo "FAIL: CI must run this as root" >&2; exit 1; }
	exit 0
fi
mkdir -p "$tmp/root/etc"
for f in passwd group shadow gshadow; do cp "/etc/$f" "$tmp/root/etc/" 2>/dev/null || touch "$tmp/root/etc/$f"; done
systemd-sysusers --root="$tmp/root" "$PWD/sysusers.d/ytkeep.conf" >"$tmp/err" 2>&1 || { cat "$tmp/err" >&2; echo "FAIL: sysusers.d" >&2; exit 1; }
systemd-tmpfiles --root="$tmp/root" --create "$PWD/tmpfiles.d/ytkeep.conf"
uid() { awk -F: -v u="$1" '$1==u{print $3}' "$tmp/root/etc/passwd"; }
gid() { awk -F: -v g="$1" '$1==g{print $3}' "$tmp/root/etc/group"; }
expect() { # path mode(decimal) uid gid
	got=$(stat -c '%a %u %g' "$tmp/root$1")
	got="$((8#${got%% *})) ${got#* }"
	[[ "$got" == "$2 $3 $4" ]] || { echo "FAIL: $1 is '$got', want '$2 $3 $4'" >&2; exit 1; }
}
# Every directory as tmpfiles.d says (its content is held to the tree
# defined in internal/spool by TestTmpfilesMatchesTree).
while read -r type path mode user group _; do
	[[ "$type" == d ]] || continue
	u=$([[ "$user" == root ]] && echo 0 || uid "$user")
	g=$([[ "$group" == root ]] && echo 0 || gid "$group")
	expect "$path" "$((8#$mode))" "$u" "$g"
done < <(grep -v '^#' "$PWD/tmpfiles.d/ytkeep.conf")
[[ "$(awk -F: '$1=="ytkeep-work"{print $4}' "$tmp/root/etc/passwd")" == "$(gid ytkeep-spool)" ]] || { echo "FAIL: ytkeep-work's primary group" >&2; exit 1; }
grep -q "^ytkeep-media:[^:]*:[^:]*:$" "$tmp/root/etc/group" || { echo "FAIL: ytkeep-media must have no members" >&2; exit 1; }
# The downloader: a group of its own with the worker as its one member,
# and in no other group (the spool's, the media's).
[[ "$(awk -F: '$1=="ytkeep-dl"{print $4}' "$tmp/root/etc/passwd")" == "$(gid ytkeep-dl)" ]] || { echo "FAIL: ytkeep-dl's primary group" >&2; exit 1; }
grep -qx "ytkeep-dl:[^:]*:[0-9]*:ytkeep-work" "$tmp/root/etc/group" || { echo "FAIL: ytkeep-dl's members must be ytkeep-work alone" >&2; exit 1; }
if grep -E "^ytkeep-(spool|media):" "$tmp/root/etc/group" | grep -q "ytkeep-dl"; then
	echo "FAIL: ytkeep-dl must be in no group but its own" >&2; exit 1
fi
# The worker has no network; the downloader has the worker's socket.
grep -qx "PrivateNetwork=yes" systemd/ytkeep-worker.service || { echo "FAIL: ytkeep-worker.service must have PrivateNetwork=yes" >&2; exit 1; }
grep -qx "User=ytkeep-dl" systemd/ytkeep-downloader.service || { echo "FAIL: ytkeep-downloader.service must run as ytkeep-dl" >&2; exit 1; }
# The downloads' RLIMIT_NPROC (default 512) and the daemon's (+256) must
# bind before the unit's TasksMax=, or a fork bomb starves the daemon.
tasks=$(sed -n 's/^TasksMax=//p' systemd/ytkeep-downloader.service)
(( tasks > 512 + 256 )) || { echo "FAIL: ytkeep-downloader.service TasksMax=$tasks is not above the default RLIMIT_NPROC 512 + 256" >&2; exit 1; }
grep -qx "OOMPolicy=continue" systemd/ytkeep-downloader.service || { echo "FAIL: ytkeep-downloader.service must keep running when a download is killed for memory (OOMPolicy=continue)" >&2; exit 1; }
echo "ok: the downloader unit's TasksMax=$tasks is above the downloads' and its own RLIMIT_NPROC; OOMPolicy=continue"
echo "ok: sysusers.d and tmpfiles.d build the tree with the documented owners and modes"
