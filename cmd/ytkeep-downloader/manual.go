package main

import "github.com/ytkeep/ytkeep/internal/daemon"

// manual is what -h, -help and --help print on standard output.
const manual = `NAME
    ytkeep-downloader - runs yt-dlp for ytkeep-worker, sandboxed

SYNOPSIS
    ytkeep-downloader [-config FILE]
    ytkeep-downloader -help

DESCRIPTION
    ytkeep-downloader serves ytkeep-worker on a Unix socket: for each job
    it runs yt-dlp (and ffmpeg) confined to the job's directory with
    Landlock, seccomp and resource limits, and an egress proxy of its own,
    which lets the download reach YouTube's hosts on port 443 and nothing
    else. It holds no secret and can reach none of the other daemons'
    files.

    It runs under systemd (ytkeep-downloader.service, started by
    ytkeep-downloader.socket) as the user ytkeep-dl, in a group of its
    own. Its user may not read the configuration file, nor may the
    downloads, which run as that user: the unit passes it on standard
    input (-config -, StandardInput=file:), and the daemon puts /dev/null
    there once read. It re-executes itself (-sandbox-server,
    -sandbox-child) to launch each download: never by hand.

OPTIONS
    -config FILE
        The configuration (default /etc/ytkeep/ytkeep.toml); "-" reads it
        from standard input, as the unit does.
    -h, -help, --help
        Print this manual and exit.
    It has no -exit-alert: it cannot write the spool. The worker alerts
    the admins when its connection to the downloader ends.

FILES
    /etc/ytkeep/ytkeep.toml
        The configuration, opened by systemd as root.
    /run/ytkeep-downloader/launcher.sock
        The worker's socket, made by ytkeep-downloader.socket (root's,
        group ytkeep-dl, 0660) and passed to the daemon.
    /var/spool/ytkeep/work/
        The job directories the worker lends it.
    /usr/bin/yt-dlp, /usr/bin/ffmpeg, /usr/bin/ffprobe
        worker.ytdlp and worker.ffmpeg (yt-dlp 2025.01.15 or newer).
    /usr/lib/systemd/system/ytkeep-downloader.service,
    /usr/lib/systemd/system/ytkeep-downloader.socket,
    /etc/apparmor.d/ytkeep-downloader, /etc/apparmor.d/ytkeep-ytdlp
        Its units and its AppArmor profiles (the daemon's; the
        downloads').

ENVIRONMENT
    LISTEN_PID, LISTEN_FDS
        Set by systemd: the socket it passes (socket activation).
    RUNTIME_DIRECTORY
        Set by systemd: where it probes yt-dlp, its own.

EXIT STATUS
    0 when stopped by SIGTERM or SIGINT (systemctl stop), 1 on an error
    (one line on standard error, and in the journal), 2 on a usage error.

SEE ALSO
    ytkeep(1) (ytkeep doctor), ytkeep-worker(8), yt-dlp(1),
    systemd.socket(5), /usr/share/doc/ytkeep/README.md
`

// helpOrUsage prints the manual and exits when the one argument asks for
// help; otherwise it makes a usage error print the synopsis and the flags.
func helpOrUsage() {
	daemon.HelpOrUsage("ytkeep-downloader", "usage: ytkeep-downloader [-config FILE]", manual)
}
