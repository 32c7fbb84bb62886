#!/usr/bin/env bash
# Installs ytkeep: binaries, systemd units, users and groups, the directory
# tree, AppArmor profiles and an example configuration. With DESTDIR set it
# only copies files (for packaging and for tests).
set -euo pipefail
cd "$(dirname "$0")/.."
D="${DESTDIR:-}"
install -d "$D/usr/local/bin" "$D/etc/systemd/system" "$D/etc/sysusers.d" "$D/etc/tmpfiles.d" \
	"$D/etc/apparmor.d" "$D/etc/ytkeep" "$D/usr/share/doc/ytkeep"
install -m 0755 bin/ytkeep-receiver bin/ytkeep-worker bin/ytkeep-downloader bin/ytkeep-courier bin/ytkeep "$D/usr/local/bin/"
install -m 0644 deploy/systemd/ytkeep-receiver.service deploy/systemd/ytkeep-worker.service deploy/systemd/ytkeep-downloader.service \
	deploy/systemd/ytkeep-downloader.socket deploy/systemd/ytkeep-courier.service "$D/etc/systemd/system/"
install -m 0644 deploy/sysusers.d/ytkeep.conf "$D/etc/sysusers.d/ytkeep.conf"
install -m 0644 deploy/tmpfiles.d/ytkeep.conf "$D/etc/tmpfiles.d/ytkeep.conf"
install -m 0644 deploy/apparmor/ytkeep-receiver deploy/apparmor/ytkeep-worker deploy/apparmor/ytkeep-downloader deploy/apparmor/ytkeep-ytdlp \
	deploy/apparmor/ytkeep-courier "$D/etc/apparmor.d/"
install -m 0644 README.md deploy/slack/manifest-socket.json deploy/slack/manifest-http.json "$D/usr/share/doc/ytkeep/"
# The configuration holds no secret, but the downloader's user (and so
# every download) must not read it: root's, for the spool group (the
# receiver's and the worker's), 0640. systemd passes it to the
# downloader on standard input. The group is set below, once sysusers.d
# has made it.
[[ -e "$D/etc/ytkeep/ytkeep.toml" ]] || install -m 0640 ytkeep.example.toml "$D/etc/ytkeep/ytkeep.toml"
# The admins' alert webhook: empty means alerts go to the log only. The
# receiver's and the courier's units load it as a credential.
if [[ ! -e "$D/etc/ytkeep/alert_webhook" ]]; then
	install -m 0400 /dev/null "$D/etc/ytkeep/alert_webhook"
fi
# The Slack app's bot token (xoxb-...), for the courier's unit: empty
# means results go to the command's response_url only. It must exist for
# systemd to start the unit, empty or not.
[[ -e "$D/etc/ytkeep/bot_token" ]] || install -m 0400 /dev/null "$D/etc/ytkeep/bot_token"
# The Slack app's secrets, empty until the admin pastes them: the
# app-level token (Socket Mode) or the signing secret (HTTP mode). The
# receiver's unit loads both as credentials and reads only its mode's;
# each file must exist for systemd to start the unit, empty or not.
for f in app_token signing_secret; do
	[[ -e "$D/etc/ytkeep/$f" ]] || install -m 0400 /dev/null "$D/etc/ytkeep/$f"
done
[[ -n "$D" ]] && exit 0

systemd-sysusers /etc/sysusers.d/ytkeep.conf
# New or kept from an earlier install (which made it 0644).
chown root:ytkeep-spool /etc/ytkeep/ytkeep.toml
chmod 0640 /etc/ytkeep/ytkeep.toml
systemd-tmpfiles --create /etc/tmpfiles.d/ytkeep.conf
# A reply key from an earlier install (0600, the receiver's group) is
# written again by the receiver itself at its next start, with the
# courier's group and mode 0640: root touches nothing in a directory a
# daemon owns but through the steps below.
#
# An earlier install's receiver read the results itself: what it had
# claimed and not yet posted is the courier's now. receiver/ is the
# receiver's: each entry is first moved (mv does not follow a symbolic
# link) into a directory of root's alone, checked there (a regular file
# of the worker's, one link), and only then given mode 0644 (the courier
# reads without the spool group) and moved into results/. Anything else
# stays in that directory, for the admin to look at. Its post counts and
# quarantine/ stay where they are.
old=/var/spool/ytkeep/receiver
if [[ -d "$old/claimed" && ! -L "$old/claimed" ]]; then
	stage=$(mktemp -d /var/spool/ytkeep/.upgrade.XXXXXX)
	find "$old/claimed" -mindepth 1 -maxdepth 1 \( -name '*.result' -o -name '*.alert' \) -print0 |
		while IFS= read -r -d '' f; do
			g="$stage/${f##*/}"
			mv -n -- "$f" "$stage/" || continue
			if [[ -f "$g" && ! -L "$g" && "$(stat -c '%U %h' -- "$g")" == "ytkeep-work 1" ]]; then
				echo "Handing ${f##*/} to the courier"
				chmod 0644 -- "$g"
				mv -n -- "$g" /var/spool/ytkeep/results/
			else
				echo "Not a result of the worker's, left in $stage: ${f##*/}" >&2
			fi
		done || true
	rmdir -- "$stage" "$old/claimed" 2>/dev/null || true
fi
if [[ "$(cat /sys/module/apparmor/parameters/enabled 2>/dev/null)" == Y ]]; then
	apparmor_parser -r /etc/apparmor.d/ytkeep-receiver /etc/apparmor.d/ytkeep-worker /etc/apparmor.d/ytkeep-ytdlp \
		/etc/apparmor.d/ytkeep-downloader /etc/apparmor.d/ytkeep-courier
fi
systemctl daemon-reload 2>/dev/null || true
cat <<MSG
Installed. Next (README, "Set up the Slack app and start"):
  1. Create the Slack app from /usr/share/doc/ytkeep/manifest-socket.json and install it to your workspace.
  2. Paste its app-level token (xapp-..., scope connections:write) into /etc/ytkeep/app_token (root-owned, mode 0400).
     HTTP mode instead (receiver.mode = "http", manifest-http.json): paste the signing secret into
     /etc/ytkeep/signing_secret (mode 0400) and put a TLS reverse proxy in front of 127.0.0.1:3000.
  3. Recommended: paste the app's bot token (xoxb-..., OAuth & Permissions) into /etc/ytkeep/bot_token (mode 0400) and set
     status_messages = true in [courier]: each job's status then lasts in the requester's DM, however long it runs.
     Empty, results go to each command's response_url, which Slack accepts for 30 minutes.
     Optional: paste the admins' channel incoming-webhook URL into /etc/ytkeep/alert_webhook (mode 0400) for security alerts.
  4. Edit /etc/ytkeep/ytkeep.toml (root:ytkeep-spool, mode 0640): app_id, allowed_teams, allowed_channels, allowed_users.
  5. ytkeep doctor -config /etc/ytkeep/ytkeep.toml
  6. systemctl enable --now ytkeep-downloader.socket ytkeep-downloader ytkeep-worker ytkeep-courier ytkeep-receiver
     (Upgrading from a release without the courier: systemctl enable --now ytkeep-courier; restart the others.)
MSG
