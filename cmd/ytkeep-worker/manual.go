package main

import "github.com/ytkeep/ytkeep/internal/daemon"

// manual is what -h, -help and --help print on standard output.
const manual = `NAME
    ytkeep-worker - claims ytkeep's jobs and stores the videos

SYNOPSIS
    ytkeep-worker [-config FILE] [-exit-alert]
    ytkeep-worker -help

DESCRIPTION
    ytkeep-worker claims the jobs ytkeep-receiver queued, has
    ytkeep-downloader run each download (over its Unix socket: the worker
    starts no program itself), checks what the download wrote and stores
    the video in the downloads directory (mode 0640, group ytkeep-media).
    Each job's result goes to the spool for ytkeep-courier to post. It
    holds no secret and has no network.

    It runs under systemd (ytkeep-worker.service, which requires
    ytkeep-downloader.service) as the user ytkeep-work, group ytkeep-spool
    and member of ytkeep-dl, with no network at all (PrivateNetwork=),
    and confines itself further with Landlock and seccomp. When the
    downloader goes away it alerts the admins and exits, to be started
    again.

OPTIONS
    -config FILE
        The configuration (default /etc/ytkeep/ytkeep.toml), decoded
        strictly: an unknown key or a bad value is an error at start.
    -exit-alert
        Run as the unit's ExecStopPost=: when the daemon was killed or
        failed ($SERVICE_RESULT, $EXIT_CODE, $EXIT_STATUS), leave an
        alert in the spool for ytkeep-courier to post.
    -h, -help, --help
        Print this manual and exit.

FILES
    /etc/ytkeep/ytkeep.toml
        The configuration (root:ytkeep-spool, 0640).
    /var/spool/ytkeep/incoming/, /var/spool/ytkeep/worker/,
    /var/spool/ytkeep/work/, /var/spool/ytkeep/results/
        Jobs to claim, its own directory, the job directories it lends to
        the downloader's group, and the results for the courier.
    /var/lib/ytkeep/downloads/
        The stored videos (worker.downloads_dir).
    /run/ytkeep-downloader/launcher.sock
        The downloader's socket (ytkeep-downloader.socket).
    /usr/lib/systemd/system/ytkeep-worker.service,
    /etc/apparmor.d/ytkeep-worker
        Its unit and its AppArmor profile.

EXIT STATUS
    0 when stopped by SIGTERM or SIGINT (systemctl stop), 1 on an error
    (one line on standard error, and in the journal), 2 on a usage error.

SEE ALSO
    ytkeep(1) (ytkeep doctor), ytkeep-downloader(8), ytkeep-receiver(8),
    ytkeep-courier(8), systemd.exec(5), /usr/share/doc/ytkeep/README.md
`

// helpOrUsage prints the manual and exits when the one argument asks for
// help; otherwise it makes a usage error print the synopsis and the flags.
func helpOrUsage() {
	daemon.HelpOrUsage("ytkeep-worker", "usage: ytkeep-worker [-config FILE] [-exit-alert]", manual)
}
