package main

import "github.com/ytkeep/ytkeep/internal/daemon"

// manual is what -h, -help and --help print on standard output.
const manual = `NAME
    ytkeep-courier - posts ytkeep's results and alerts to Slack

SYNOPSIS
    ytkeep-courier [-config FILE] [-exit-alert]
    ytkeep-courier -help

DESCRIPTION
    ytkeep-courier claims the results ytkeep-worker writes and posts
    them to Slack: with the app's bot token (courier.status_messages), a
    status message per job in the requester's direct messages, and the
    stored file uploaded on request; without it, to each command's
    response_url, which Slack accepts for 30 minutes. It opens each
    command's sealed reply with the receiver's reply key, accepts only
    what the worker's user wrote, and posts the admins' alerts, its own
    and the worker's, to the alert webhook. It takes no input from Slack,
    listens on nothing and runs nothing.

    It runs under systemd (ytkeep-courier.service) as the user
    ytkeep-courier, in a group of its own and member of ytkeep-media (to
    read stored videos for uploads), not of the spool group: the unit
    passes it the configuration on standard input (-config -,
    StandardInput=file:). It confines itself further with Landlock and
    seccomp.

OPTIONS
    -config FILE
        The configuration (default /etc/ytkeep/ytkeep.toml); "-" reads it
        from standard input, as the unit does.
    -exit-alert
        Run as the unit's ExecStopPost=: when the daemon was killed or
        failed ($SERVICE_RESULT, $EXIT_CODE, $EXIT_STATUS), post an
        alert to the admins' channel now, or at its next start.
    -h, -help, --help
        Print this manual and exit.

FILES
    /etc/ytkeep/ytkeep.toml
        The configuration, opened by systemd as root.
    /etc/ytkeep/bot_token, /etc/ytkeep/alert_webhook
        The bot token (xoxb-...) and the admins' incoming webhook, root's,
        0400, handed to the unit as systemd credentials (LoadCredential=,
        read from $CREDENTIALS_DIRECTORY). Each must exist, empty if
        unused.
    /var/spool/ytkeep/results/, /var/spool/ytkeep/courier/
        The results to claim, and its own directory.
    /var/spool/ytkeep/receiver/reply.key
        The receiver's reply key, read only.
    /var/lib/ytkeep/downloads/
        The stored videos, read only, for uploads.
    /usr/lib/systemd/system/ytkeep-courier.service,
    /etc/apparmor.d/ytkeep-courier
        Its unit and its AppArmor profile.

ENVIRONMENT
    CREDENTIALS_DIRECTORY
        Set by systemd: where the unit's credentials are.

EXIT STATUS
    0 when stopped by SIGTERM or SIGINT (systemctl stop), 1 on an error
    (one line on standard error, and in the journal), 2 on a usage error.

SEE ALSO
    ytkeep(1) (ytkeep doctor), ytkeep-receiver(8), ytkeep-worker(8),
    systemd.exec(5), /usr/share/doc/ytkeep/README.md
`

// helpOrUsage prints the manual and exits when the one argument asks for
// help; otherwise it makes a usage error print the synopsis and the flags.
func helpOrUsage() {
	daemon.HelpOrUsage("ytkeep-courier", "usage: ytkeep-courier [-config FILE] [-exit-alert]", manual)
}
