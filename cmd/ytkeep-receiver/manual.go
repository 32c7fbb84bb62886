package main

import "github.com/ytkeep/ytkeep/internal/daemon"

// manual is what -h, -help and --help print on standard output.
const manual = `NAME
    ytkeep-receiver - takes ytkeep's Slack commands, queues jobs

SYNOPSIS
    ytkeep-receiver [-config FILE] [-exit-alert]
    ytkeep-receiver -help

DESCRIPTION
    ytkeep-receiver takes the Slack app's /ytkeep commands and queues each
    allowed one as a job in the spool, for ytkeep-worker. In Socket Mode
    (receiver.mode = "socket") it connects out to Slack with the app-level
    token and listens on no port; in HTTP mode ("http") it serves signed
    requests on receiver.listen, behind a TLS reverse proxy. It checks the
    app ID, the team, channel and user allowlists and the video URL, and
    answers at once; ytkeep-courier posts the results. It runs nothing.

    It runs under systemd (ytkeep-receiver.service) as the user
    ytkeep-recv, group ytkeep-spool, in an empty root directory, and
    confines itself further with Landlock and seccomp once it has read its
    configuration and secrets. Started as root outside systemd it switches
    to receiver.run_as first.

OPTIONS
    -config FILE
        The configuration (default /etc/ytkeep/ytkeep.toml), decoded
        strictly: an unknown key or a bad value is an error at start.
    -exit-alert
        Run as the unit's ExecStopPost=: when the daemon was killed (a
        seccomp SIGSYS, a crash) or failed ($SERVICE_RESULT, $EXIT_CODE,
        $EXIT_STATUS), alert the admins' channel, or keep the alert in
        the spool for its next start.
    -h, -help, --help
        Print this manual and exit.

FILES
    /etc/ytkeep/ytkeep.toml
        The configuration (root:ytkeep-spool, 0640).
    /etc/ytkeep/app_token, /etc/ytkeep/signing_secret,
    /etc/ytkeep/alert_webhook
        The app-level token (Socket Mode), the signing secret (HTTP mode)
        and the admins' incoming webhook, root's, 0400, handed to the
        unit as systemd credentials (LoadCredential=, read from
        $CREDENTIALS_DIRECTORY). Each must exist, empty if unused.
    /var/spool/ytkeep/incoming/
        Where it queues jobs.
    /var/spool/ytkeep/receiver/
        Its own directory: reply.key (seals each command's reply URL,
        readable by the courier's group), alerts kept for its next start.
    /usr/lib/systemd/system/ytkeep-receiver.service,
    /etc/apparmor.d/ytkeep-receiver
        Its unit and its AppArmor profile.

ENVIRONMENT
    CREDENTIALS_DIRECTORY
        Set by systemd: where the unit's credentials are.
    YTKEEP_SIGNING_SECRET
        HTTP mode, when neither receiver.signing_secret_file nor the
        credential gives the signing secret.

EXIT STATUS
    0 when stopped by SIGTERM or SIGINT (systemctl stop), 1 on an error
    (one line on standard error, and in the journal), 2 on a usage error.

SEE ALSO
    ytkeep(1) (ytkeep doctor), ytkeep-worker(8), ytkeep-courier(8),
    systemd.exec(5), /usr/share/doc/ytkeep/README.md
`

// helpOrUsage prints the manual and exits when the one argument asks for
// help; otherwise it makes a usage error print the synopsis and the flags.
func helpOrUsage() {
	daemon.HelpOrUsage("ytkeep-receiver", "usage: ytkeep-receiver [-config FILE] [-exit-alert]", manual)
}
