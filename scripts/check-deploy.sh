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
# These units report abnormal ends (seccomp kills, crashes) to the admins.
for d in receiver worker courier; do
	cfg=/etc/ytkeep/ytkeep.toml
	[[ $d == courier ]] && cfg=- # on standard input, below
	grep -qxF "ExecStopPost=/usr/bin/ytkeep-$d -config $cfg -exit-alert" "systemd/ytkeep-$d.service" ||
		{ echo "FAIL: ytkeep-$d.service has no exit alert (ExecStopPost=)" >&2; exit 1; }
done
echo "ok: the receiver, worker and courier units alert the admins when the daemon is killed or fails (ExecStopPost=)"
# The courier, outside the spool group the file is readable by, gets its
# configuration on standard input too (for its exit alert as well), and
# the file is not in its root.
cu=systemd/ytkeep-courier.service
for line in "ExecStart=/usr/bin/ytkeep-courier -config -" "StandardInput=file:/etc/ytkeep/ytkeep.toml" \
	"StandardOutput=journal" "StandardError=journal"; do
	grep -qx -- "$line" "$cu" || { echo "FAIL: $cu must have the line $line" >&2; exit 1; }
done
if grep -E '^(BindPaths|BindReadOnlyPaths)=' "$cu" | grep -q 'ytkeep\.toml'; then
	echo "FAIL: $cu binds the configuration into its root" >&2; exit 1
fi
echo "ok: the courier's configuration comes on standard input, not bound into its root"
# The downloader gets its configuration from systemd on standard input:
# its user cannot read the file (0640, root:ytkeep-spool), and the file is
# not in its root; its log still goes to the journal.
dl=systemd/ytkeep-downloader.service
for line in "ExecStart=/usr/bin/ytkeep-downloader -config -" "StandardInput=file:/etc/ytkeep/ytkeep.toml" \
	"StandardOutput=journal" "StandardError=journal"; do
	grep -qx "$line" "$dl" || { echo "FAIL: $dl must have the line $line" >&2; exit 1; }
done
if grep -E '^(BindPaths|BindReadOnlyPaths)=' "$dl" | grep -q 'ytkeep\.toml'; then
	echo "FAIL: $dl binds the configuration into its root: its downloads could read it" >&2; exit 1
fi
echo "ok: the downloader's configuration comes on standard input (StandardInput=file:, output to the journal), not bound into its root"
# The courier runs as its own user and group (ytkeep-media, for uploads,
# comes from sysusers.d), has the whole spool (claims by rename) and the
# downloads read only, and no socket but IPv4 and IPv6.
cu=systemd/ytkeep-courier.service
for line in "User=ytkeep-courier" "Group=ytkeep-courier" "BindPaths=/var/spool/ytkeep" "BindReadOnlyPaths=/var/lib/ytkeep/downloads" \
	"RestrictAddressFamilies=AF_INET AF_INET6"; do
	grep -qx "$line" "$cu" || { echo "FAIL: $cu must have the line $line" >&2; exit 1; }
done
if grep -Eq '^BindPaths=.*downloads' "$cu"; then echo "FAIL: $cu binds the downloads writable" >&2; exit 1; fi
echo "ok: the courier runs as ytkeep-courier:ytkeep-courier with the spool, the downloads read only, IPv4 and IPv6 only"
# The receiver gets the Slack app's secrets from systemd, both modes'
# (it reads only its mode's; the package's postinst makes each file,
# empty), and the
# alert webhook; the courier gets the alert webhook and the bot token.
# Each one's AppArmor profile lets it read its own, in /etc/ytkeep and as
# credentials, and denies the other's; the worker's and the downloader's
# deny them all.
reads() { # daemon secret: its profile reads the secret in /etc/ytkeep and as a credential
	[[ $(grep -Ec "^ *(/etc/ytkeep/|/\{,var/\}run/credentials/ytkeep-$1\.service/)\{([a-z_]+,)*$2(,[a-z_]+)*\} r,$" "apparmor/ytkeep-$1") == 2 ]] ||
		{ echo "FAIL: apparmor/ytkeep-$1 must let the $1 read $2 both in /etc/ytkeep and as a credential" >&2; exit 1; }
}
denies() { # daemon secret
	grep -Eq "^ *deny /etc/ytkeep/(\{([a-z_]+,)*$2(,[a-z_]+)*\}|$2) rwx,$" "apparmor/ytkeep-$1" ||
		{ echo "FAIL: apparmor/ytkeep-$1 does not deny /etc/ytkeep/$2" >&2; exit 1; }
}
loads() { # daemon secret...: its unit loads exactly these secrets
	local unit=systemd/ytkeep-$1.service d=$1 cred
	shift
	for cred in "$@"; do
		grep -qx "LoadCredential=$cred:/etc/ytkeep/$cred" "$unit" || { echo "FAIL: $unit must have the line LoadCredential=$cred:/etc/ytkeep/$cred" >&2; exit 1; }
		reads "$d" "$cred"
	done
	if [[ $(grep -c '^LoadCredential=' "$unit") != $# ]]; then
		echo "FAIL: $unit loads credentials this script does not check:" >&2; grep '^LoadCredential=' "$unit" >&2; exit 1
	fi
}
loads receiver app_token signing_secret alert_webhook
loads courier alert_webhook bot_token
for cred in app_token signing_secret alert_webhook bot_token; do
	denies worker "$cred"
	denies downloader "$cred"
done
denies receiver bot_token
denies courier app_token
denies courier signing_secret
echo "ok: the receiver loads app_token, signing_secret and alert_webhook, the courier alert_webhook and bot_token, from /etc/ytkeep (LoadCredential=); AppArmor lets each read its own, denies bot_token to the receiver, app_token and signing_secret to the courier, and all four to the worker and the downloader"
# The courier's spool: the results (the receiver no longer reads them) and
# its own directory; of the receiver's directory only the reply key, read.
grep -qx "  deny /var/spool/ytkeep/{results,courier}/{,\*\*} rwx," apparmor/ytkeep-receiver ||
	{ echo "FAIL: apparmor/ytkeep-receiver must deny results/ and courier/" >&2; exit 1; }
if grep -Eq "^ */var/spool/ytkeep/results" apparmor/ytkeep-receiver; then
	echo "FAIL: apparmor/ytkeep-receiver still grants results/" >&2; exit 1
fi
for p in worker downloader; do
	grep -Eq "^ *deny /var/spool/ytkeep/\{([a-z]+,)*courier(,[a-z]+)*\}/\*\* rwx,$" "apparmor/ytkeep-$p" ||
		{ echo "FAIL: apparmor/ytkeep-$p does not deny courier/" >&2; exit 1; }
done
for line in "/var/spool/ytkeep/receiver/reply.key r," "deny /var/spool/ytkeep/receiver/ rwx," "deny /var/spool/ytkeep/receiver/*/{,**} rwx," \
	"deny /var/spool/ytkeep/{incoming,worker,work}/{,**} rwx,"; do
	grep -qxF "  $line" apparmor/ytkeep-courier || { echo "FAIL: apparmor/ytkeep-courier must have the rule $line" >&2; exit 1; }
done
extra=$(grep -E "^ */var/spool/ytkeep/receiver" apparmor/ytkeep-courier | grep -vxF "  /var/spool/ytkeep/receiver/reply.key r," || true)
[[ -z "$extra" ]] || { echo "FAIL: apparmor/ytkeep-courier grants more of receiver/ than reply.key, read: $extra" >&2; exit 1; }
echo "ok: AppArmor gives results/ and courier/ to the courier alone (with receiver/reply.key, read); the receiver, worker and downloader are denied courier/"

for profile in apparmor/*; do
	apparmor_parser -Q -K "$profile" 2>"$tmp/err" || { cat "$tmp/err" >&2; echo "FAIL: $profile" >&2; exit 1; }
	echo "ok: AppArmor profile $(basename "$profile") compiles (not enforced: this kernel has no AppArmor)"
done

# The package ships what deploy/ has, where the units and the profiles
# expect it (deploy/deb/nfpm.yaml; scripts/check-deb.sh installs the
# built package and purges it): each unit, profile, sysusers.d and
# tmpfiles.d file, the manifests, and the programs at the paths the units
# start and the profiles attach to.
nfpm=deb/nfpm.yaml
ships() { # src dst
	grep -A1 -xF "  - src: $1" "$nfpm" | grep -qxF "    dst: $2" ||
		{ echo "FAIL: $nfpm does not ship $1 as $2" >&2; exit 1; }
}
shipped() { grep -qxF "    dst: $1" "$nfpm"; }
for f in systemd/*.service systemd/*.socket; do ships "deploy/$f" "/usr/lib/systemd/system/${f#systemd/}"; done
for f in apparmor/*; do ships "deploy/$f" "/etc/apparmor.d/${f#apparmor/}"; done
for f in sysusers.d/*.conf tmpfiles.d/*.conf; do ships "deploy/$f" "/usr/lib/$f"; done
for f in slack/*.json; do ships "deploy/$f" "/usr/share/doc/ytkeep/${f#slack/}"; done
for b in ytkeep ytkeep-receiver ytkeep-worker ytkeep-downloader ytkeep-courier; do ships "bin/$b" "/usr/bin/$b"; done
ships ytkeep.example.toml /usr/share/ytkeep/ytkeep.example.toml
while read -r prog; do
	shipped "$prog" || { echo "FAIL: a unit starts $prog, which $nfpm does not ship" >&2; exit 1; }
done < <(sed -n 's/^Exec[A-Za-z]*=[-@+!:]*\(\/[^ ]*\).*/\1/p' systemd/*.service | sort -u)
# A profile attaches to /usr/{,local/}bin/<daemon>: the package's path,
# and a source install's from before the package, whose units would
# otherwise run their binaries unconfined after an upgrade.
while read -r prog; do
	shipped "${prog/\{,local\/\}/}" || { echo "FAIL: an AppArmor profile attaches to $prog, which $nfpm does not ship" >&2; exit 1; }
done < <(sed -n 's/^profile [a-z-]* \(\/[^ ]*\) .*/\1/p' apparmor/*)
grep -qx '  postinstall: deploy/deb/postinst' "$nfpm" && grep -qx '  preremove: deploy/deb/prerm' "$nfpm" &&
	grep -qx '  postremove: deploy/deb/postrm' "$nfpm" || { echo "FAIL: $nfpm lacks a maintainer script" >&2; exit 1; }
# Nothing enabled or started by the package: the admin does, once configured.
# (try-restart, after an upgrade, restarts only what was running.)
if grep -Eq '^\s*(systemctl|deb-systemd-invoke|deb-systemd-helper)( [-a-z]+)* (enable|start|restart|reenable|reload-or-restart)( |$)' deb/postinst; then
	echo "FAIL: deb/postinst enables or starts a unit" >&2; exit 1
fi
echo "ok: the package ships every unit, profile, sysusers.d and tmpfiles.d file and manifest, and the programs the units start and the profiles attach to; postinst enables and starts nothing"

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
	got=$(stat -c '%a %u %g' "$tmp/root$1" 2>/dev/null) || { echo "FAIL: tmpfiles.d did not make $1" >&2; exit 1; }
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
grep -qx "ytkeep-media:[^:]*:[0-9]*:ytkeep-courier" "$tmp/root/etc/group" || { echo "FAIL: ytkeep-media's members must be ytkeep-courier alone" >&2; exit 1; }
# The courier: a group of its own, with no member, the group of the
# receiver's directory (for the reply key); a member of ytkeep-media, not
# of the spool group.
[[ "$(awk -F: '$1=="ytkeep-courier"{print $4}' "$tmp/root/etc/passwd")" == "$(gid ytkeep-courier)" ]] || { echo "FAIL: ytkeep-courier's primary group" >&2; exit 1; }
grep -qx "ytkeep-courier:[^:]*:[0-9]*:" "$tmp/root/etc/group" || { echo "FAIL: ytkeep-courier's group must have no members" >&2; exit 1; }
if grep -Eq "^ytkeep-(spool|dl):[^:]*:[^:]*:.*ytkeep-courier" "$tmp/root/etc/group"; then
	echo "FAIL: ytkeep-courier must be in no group but its own and ytkeep-media" >&2; exit 1
fi
# The tree's hand-overs, spelled out: results/ is the courier's; the
# receiver's directory is setgid, its group the courier's; the private
# directories are 0700, and the receiver's claimed/, quarantine/ and
# replies/ are gone (they are the courier's).
expect /var/spool/ytkeep/results $((8#1730)) "$(uid ytkeep-courier)" "$(gid ytkeep-spool)"
expect /var/spool/ytkeep/receiver $((8#2710)) "$(uid ytkeep-recv)" "$(gid ytkeep-courier)"
for d in "" tmp claimed quarantine replies alerts; do
	expect "/var/spool/ytkeep/courier${d:+/$d}" $((8#700)) "$(uid ytkeep-courier)" "$(gid ytkeep-courier)"
done
for d in tmp alerts; do
	expect "/var/spool/ytkeep/receiver/$d" $((8#700)) "$(uid ytkeep-recv)" "$(gid ytkeep-spool)"
done
for d in claimed quarantine replies; do
	[[ ! -e "$tmp/root/var/spool/ytkeep/receiver/$d" ]] || { echo "FAIL: tmpfiles.d still makes receiver/$d" >&2; exit 1; }
done
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
