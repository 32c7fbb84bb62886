package confine

// The Landlock rules of the four domains (DESIGN §2). Paths that differ
// between distributions are optional; everything else must exist.

// System files a TLS and DNS client reads.
var netClientFiles = []string{
	"/etc/resolv.conf", "/etc/hosts", "/etc/nsswitch.conf", "/etc/gai.conf", "/etc/host.conf",
}

var netClientDirs = []string{"/etc/ssl", "/etc/ca-certificates", "/usr/share/ca-certificates"}

var timeFiles = []string{"/etc/localtime"}

var timeDirs = []string{"/usr/share/zoneinfo"}

// ReceiverParams are the receiver's paths and ports.
type ReceiverParams struct {
	ConfigFile string
	ReadFiles  []string // signing secret, TLS certificate and key
	SpoolDirs  []string // its private dir and results/
	DropDirs   []string // incoming/: create only
	ListenPort uint16   // 0: none (Socket Mode)
	// ConnectPorts: 443 for Slack, 53 for DNS over TCP, and the simulated
	// Slack's port in test mode.
	ConnectPorts []uint16
}

// ReceiverRules: read its config, secrets and the system's DNS and TLS
// files; write only the spool, and into incoming/ only create; bind its port; connect only to the given
// ports; execute nothing.
func ReceiverRules(p ReceiverParams) *Rules {
	// Socket Mode (port 0) binds nothing: no bind right at all.
	var bind []uint16
	if p.ListenPort != 0 {
		bind = []uint16{p.ListenPort}
	}
	return &Rules{
		Name:       "receiver",
		ReadFiles:  uniq(append(append(append([]string{p.ConfigFile}, p.ReadFiles...), netClientFiles...), timeFiles...)),
		ReadDirs:   uniq(append(append([]string{}, netClientDirs...), timeDirs...)),
		WriteDirs:  uniq(p.SpoolDirs),
		DropDirs:   uniq(p.DropDirs),
		Optional:   append(append(append([]string{}, netClientFiles...), netClientDirs...), append(timeFiles, timeDirs...)...),
		ConnectTCP: p.ConnectPorts,
		BindTCP:    bind,
	}
}

// CourierParams are the courier's paths and ports.
type CourierParams struct {
	ConfigFile string
	ReadFiles  []string // the reply key (the receiver's)
	// ReadDirs: the stored files (the downloads directory), read only,
	// when it uploads them; none otherwise.
	ReadDirs  []string
	SpoolDirs []string // its private dir and results/
	// ConnectPorts: 443 for Slack, 53 for DNS over TCP, and the simulated
	// Slack's port in test mode.
	ConnectPorts []uint16
}

// CourierRules: read its config, the reply key, the stored files (for
// uploads) and the system's DNS and TLS files; write only its spool
// directories; connect only to the given ports; bind nothing, execute
// nothing.
func CourierRules(p CourierParams) *Rules {
	var cfg []string
	if p.ConfigFile != "" { // "": read from standard input
		cfg = []string{p.ConfigFile}
	}
	return &Rules{
		Name:       "courier",
		ReadFiles:  uniq(append(append(append(cfg, p.ReadFiles...), netClientFiles...), timeFiles...)),
		ReadDirs:   uniq(append(append(append([]string{}, p.ReadDirs...), netClientDirs...), timeDirs...)),
		WriteDirs:  uniq(p.SpoolDirs),
		Optional:   append(append(append([]string{}, netClientFiles...), netClientDirs...), append(timeFiles, timeDirs...)...),
		ConnectTCP: p.ConnectPorts,
	}
}

// WorkerParams are the worker's paths.
type WorkerParams struct {
	ConfigFile string
	WriteDirs  []string // incoming/, its private dir, downloads
	DropDirs   []string // results/: create only
}

// WorkerRules: read its config; write the spool and the downloads, and
// into results/ only create; no network, execute nothing (the launcher server, started before, does).
func WorkerRules(p WorkerParams) *Rules {
	return &Rules{
		Name:      "worker",
		ReadFiles: uniq(append([]string{p.ConfigFile}, timeFiles...)),
		ReadDirs:  timeDirs,
		WriteDirs: uniq(p.WriteDirs),
		DropDirs:  uniq(p.DropDirs),
		Optional:  append(append([]string{}, timeFiles...), timeDirs...),
	}
}

// DownloaderParams are the downloader domain's paths and ports.
type DownloaderParams struct {
	JobRoot      string   // the directory holding every job directory
	ExtraExec    []string // e.g. where a current yt-dlp or deno is installed
	ConnectPorts []uint16 // 443 and 80, and the media server's in test mode
}

// DownloaderRules: read and execute the system's programs and libraries,
// read the TLS and DNS files, write only the job directory, connect only
// to the given ports, bind nothing.
func DownloaderRules(p DownloaderParams) *Rules {
	exec := []string{"/usr", "/lib", "/lib64", "/bin", "/sbin"}
	etcDirs := []string{"/etc/ssl", "/etc/ca-certificates", "/etc/python3", "/etc/python3.11", "/etc/python3.12", "/etc/python3.13", "/etc/alternatives", "/etc/ld.so.conf.d"}
	etcFiles := []string{"/etc/ld.so.cache", "/etc/mime.types", "/etc/localtime"}
	return &Rules{
		Name:       "downloader",
		ExecDirs:   uniq(append(exec, p.ExtraExec...)),
		ReadDirs:   uniq(append(etcDirs, "/proc/self")),
		ReadFiles:  uniq(append(etcFiles, netClientFiles...)),
		RWFiles:    []string{"/dev/null", "/dev/urandom", "/dev/random", "/dev/zero"},
		WriteDirs:  []string{p.JobRoot},
		Optional:   append(append(append(append([]string{"/lib64", "/sbin"}, etcDirs...), etcFiles...), netClientFiles...), p.ExtraExec...),
		ConnectTCP: p.ConnectPorts,
	}
}
