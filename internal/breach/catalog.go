//go:build breach

package breach

import (
	"bufio"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

func int80Getpid() int64

// Expect says what must happen for an attempt not to count as an escape.
type Expect string

const (
	// Blocked: the operation must fail (an error, or the process killed).
	Blocked Expect = "blocked"
	// Contained: it may run, but only within limits the attempt checks.
	Contained Expect = "contained"
	// Accepted: a documented accepted risk (docs/threat-model.md); its
	// outcome is reported, never counted as an escape.
	Accepted Expect = "accepted"
)

// Env names the targets, from YTKEEP_BREACH_* variables.
type Env struct {
	Secret, Spool, Downloads, JobRoot, OtherJob, StoredFile, Config string
	// BotToken is the courier's bot token file, AppToken the receiver's
	// app-level token file (Socket Mode), ReceiverFile one of the files
	// of the receiver's private directory (0600: not the reply key).
	BotToken, AppToken, ReceiverFile string
	// Setuid is a setuid-root program that prints its effective uid
	// (the runner in "whoami" mode), installed by the suite.
	Setuid                  string
	ReceiverPort, SlackPort int
	// Server is the launcher server's pid: the runner's parent, outside the
	// downloader's own Landlock domain. (An attempt's own parent is the
	// runner, inside it.)
	Server int
	// MediaPort is the test media server's: the egress proxy's one
	// loopback origin, which the children must reach through it alone.
	MediaPort int
	// Downloader only: Domain is Downloader; Proxy the egress proxy's URL
	// with the job's credentials, taken from https_proxy as yt-dlp
	// takes it; DiskBudget the bytes the worker lets a job directory hold.
	Domain     string
	Proxy      string
	DiskBudget int64
}

// LoadEnv reads the targets.
func LoadEnv() *Env {
	g := func(k string) string { return os.Getenv("YTKEEP_BREACH_" + k) }
	p, _ := strconv.Atoi(g("RECEIVER_PORT"))
	sp, _ := strconv.Atoi(g("SLACK_PORT"))
	srv, _ := strconv.Atoi(g("SERVER"))
	mp, _ := strconv.Atoi(g("MEDIA_PORT"))
	budget, _ := strconv.ParseInt(g("DISK_BUDGET"), 10, 64)
	return &Env{Secret: g("SECRET"), Spool: g("SPOOL"), Downloads: g("DOWNLOADS"), JobRoot: g("JOBROOT"),
		OtherJob: g("OTHERJOB"), StoredFile: g("STORED"), Config: g("CONFIG"), ReceiverPort: p, SlackPort: sp, Server: srv,
		BotToken: g("BOT_TOKEN"), AppToken: g("APP_TOKEN"), ReceiverFile: g("RECEIVER_FILE"),
		Setuid: g("SETUID"), MediaPort: mp, Domain: g("DOMAIN"), Proxy: g("PROXY"), DiskBudget: budget}
}

// Attempt is one escape attempt.
type Attempt struct {
	ID     string
	What   string
	Layers []string // meant to stop it
	Expect Expect
	// Run returns nil if the operation succeeded (an escape when Blocked).
	Run func(e *Env) error
}

// readFile opens p and reads from it. An empty file read to its end
// counts as read: the access was granted (a stored video an earlier
// attempt truncated, say, must not pass for a block).
func readFile(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.Read(make([]byte, 1))
	if errors.Is(err, io.EOF) {
		return nil
	}
	return err
}

func writeFile(p string) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	return f.Close()
}

// CourierRecord is the file B35 writes in courier/replies/ when it is
// not stopped (the suite removes it).
const CourierRecord = "aaaaaaaaaaaaaaaaaaaaaaaaaa.json"

// TmpLitter prefixes the file B17 leaves in /tmp when it is not stopped
// (the suite removes it).
const TmpLitter = "/tmp/ytkeep-breach-litter-"

// plant leaves an empty file at dst the way the daemons write the spool
// (a private temporary directory, then a rename: Landlock lets them only
// create, not write, in the other side's directory), or else directly.
func plant(e *Env, dst string) error {
	for _, tmp := range []string{filepath.Join(e.Spool, "receiver", "tmp"), filepath.Join(e.Spool, "worker", "tmp")} {
		p := filepath.Join(tmp, "breach-plant")
		if writeFile(p) != nil {
			continue
		}
		err := os.Rename(p, dst)
		if err == nil {
			return nil
		}
		os.Remove(p)
	}
	return writeFile(dst)
}

func listDir(p string) error { _, err := os.ReadDir(p); return err }

func tcpConnect(port int) error {
	c, err := net.Dial("tcp4", "127.0.0.1:"+strconv.Itoa(port))
	if err == nil {
		c.Close()
	}
	return err
}

func rawErr(e syscall.Errno) error {
	if e == 0 {
		return nil
	}
	return e
}

// NotHere prefixes the outcome of an attempt whose target does not exist
// in the domain it runs in (the egress proxy and the job's disk budget
// are the downloader's). It is no escape, and no block either.
const NotHere = "not applicable: "

func notHere(why string) error { return errors.New(NotHere + why) }

// reached is an attempt that went past the sandbox, whether or not its
// destination then answered: a connection made, or one that timed out,
// was refused by the far end or found no route, means the process was
// allowed to send. It counts as success. Only the sandbox's own refusal
// (sandboxRefused, or the process killed) blocks, so that no network
// condition of the machine running the suite can pass for a block.
type reached struct{ how string }

func (r *reached) Error() string { return "succeeded: " + r.how }

// sandboxRefused reports whether err is the sandbox refusing in this
// process: Landlock and the seccomp filters' errno rules answer EACCES
// or EPERM.
func sandboxRefused(err error) bool { return errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM) }

// connectWait bounds how long connect4 waits for a handshake to end. A
// wait that ends is ETIMEDOUT, a success like any other end: the verdict
// does not depend on it.
const connectWait = 2 * time.Second

// connect4 starts a TCP connection to ap with one socket and one connect
// call, as native code would. sent reports whether the connection got
// under way (connect returned at once or EINPROGRESS: the SYN went out
// with the sandbox's leave); err is then how the handshake ended, and
// otherwise why connect failed.
func connect4(ap netip.AddrPort) (sent bool, err error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return false, err
	}
	defer unix.Close(fd)
	err = unix.Connect(fd, &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()})
	if err != unix.EINPROGRESS {
		return err == nil, err
	}
	// Wait with epoll, which every domain's filter allows (the Go
	// runtime's poller uses it; the receiver's allowlist refuses poll).
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return true, fmt.Errorf("under way, couldn't wait for it: %s", describe(err))
	}
	defer unix.Close(ep)
	if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLOUT, Fd: int32(fd)}); err != nil {
		return true, fmt.Errorf("under way, couldn't wait for it: %s", describe(err))
	}
	deadline := time.Now().Add(connectWait)
	for {
		ms := int(time.Until(deadline).Milliseconds())
		if ms <= 0 {
			return true, unix.ETIMEDOUT
		}
		// epoll_pwait without a signal mask, as the runtime calls it
		// (x/sys/unix's EpollWait is epoll_wait, which the daemons'
		// allowlists leave out).
		var ev [1]unix.EpollEvent
		n, _, en := unix.Syscall6(unix.SYS_EPOLL_PWAIT, uintptr(ep), uintptr(unsafe.Pointer(&ev[0])), 1, uintptr(ms), 0, 0)
		if en == unix.EINTR || (en == 0 && n == 0) {
			continue
		}
		if en != 0 {
			return true, fmt.Errorf("under way, couldn't wait for it: %s", describe(en))
		}
		soErr, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
		if err != nil {
			return true, fmt.Errorf("under way, couldn't read its end: %s", describe(err))
		}
		return true, rawErr(syscall.Errno(soErr))
	}
}

// connectEach connects to each of addrs (IPv4 address and port) in turn.
// It returns the sandbox's refusal if every connect was refused inside
// the sandbox, and otherwise, as success, how the first other one went.
func connectEach(addrs ...string) error {
	var err error
	for _, a := range addrs {
		var sent bool
		sent, err = connect4(netip.MustParseAddrPort(a))
		switch {
		case err == nil:
			return &reached{"connected to " + a}
		case sent:
			return &reached{"connect to " + a + " left the sandbox (" + describe(err) + ")"}
		case !sandboxRefused(err):
			return &reached{"connect to " + a + " was not refused in the sandbox (" + describe(err) + ")"}
		}
	}
	return err
}

// resolvers are the local stub resolver's address and the IPv4 name
// servers of /etc/resolv.conf.
func resolvers() []string {
	rs := []string{"127.0.0.53:53"}
	b, err := os.ReadFile("/etc/resolv.conf")
	if err != nil {
		return rs
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 || f[0] != "nameserver" {
			continue
		}
		if ip, err := netip.ParseAddr(f[1]); err == nil && ip.Is4() {
			rs = append(rs, netip.AddrPortFrom(ip, 53).String())
		}
	}
	return rs
}

// dnsQuery is a DNS query (RFC 1035) for name's A record.
func dnsQuery(name string) []byte {
	b := []byte{0x62, 0x72, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0} // id, recursion desired, one question
	for _, l := range strings.Split(name, ".") {
		b = append(b, byte(len(l)))
		b = append(b, l...)
	}
	return append(b, 0, 0, 1, 0, 1) // the root, type A, class IN
}

// sendUDP sends msg in a datagram to each of addrs (IPv4 address and
// port) in turn, from one socket. It returns the sandbox's refusal if
// every send (or the socket itself) was refused inside the sandbox, and
// otherwise, as success, how the first other one went.
func sendUDP(msg []byte, addrs ...string) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	for _, a := range addrs {
		ap := netip.MustParseAddrPort(a)
		err = unix.Sendto(fd, msg, 0, &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()})
		switch {
		case err == nil:
			return &reached{"sent a DNS query to " + a}
		case !sandboxRefused(err):
			return &reached{"a UDP socket, and sending to " + a + " failed only at the network (" + describe(err) + ")"}
		}
	}
	return err
}

// ProxyRefused prefixes the outcome of a request the egress proxy
// refused (403): the only outcome that counts as blocked for the
// attempts through it.
const ProxyRefused = "refused by the proxy: "

// RebindName is an allowed name (under *.youtube.com) that the suite
// makes resolve to loopback on the test machine, for B96.
const RebindName = "ytkeep-breach-rebind.youtube.com"

// proxyConnect asks the egress proxy, with the job's credentials, for a
// tunnel to each of targets in turn, as yt-dlp would. It returns the
// refusal if the proxy refused (403) every one; success if it opened a
// tunnel (200) or tried to (502, 504: it dialled); otherwise an error,
// which the suite reports as inconclusive.
func proxyConnect(e *Env, targets ...string) error {
	if e.Proxy == "" {
		return notHere("no egress proxy in this domain")
	}
	u, err := url.Parse(e.Proxy)
	if err != nil || u.User == nil {
		return fmt.Errorf("bad proxy URL")
	}
	token, _ := u.User.Password()
	auth := base64.StdEncoding.EncodeToString([]byte(u.User.Username() + ":" + token))
	status := ""
	for _, target := range targets {
		if status, err = askProxy(u.Host, auth, target); err != nil {
			return fmt.Errorf("no answer from the proxy for %s: %v", target, err)
		}
		switch code, _, _ := strings.Cut(status, " "); code {
		case "403":
		case "200", "502", "504":
			return &reached{"the proxy answered " + status + " for " + target}
		default:
			return fmt.Errorf("inconclusive: the proxy answered %s for %s", status, target)
		}
	}
	return errors.New(ProxyRefused + status)
}

// askProxy sends one CONNECT for target to the proxy at addr and returns
// the status of its answer ("403 Forbidden").
func askProxy(addr, auth, target string) (string, error) {
	d := net.Dialer{Timeout: 10 * time.Second}
	d.SetMultipathTCP(false)
	c, err := d.Dial("tcp4", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	// A bound on a broken proxy: its own head timeout is 10 s.
	c.SetDeadline(time.Now().Add(60 * time.Second))
	if _, err := fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\nProxy-Authorization: Basic %s\r\n\r\n", target, target, auth); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", err
	}
	proto, status, ok := strings.Cut(strings.TrimRight(line, "\r\n"), " ")
	if !ok || !strings.HasPrefix(proto, "HTTP/1.") {
		return "", fmt.Errorf("not an HTTP answer: %q", line)
	}
	return status, nil
}

// deepFill hides more bytes than the job's disk budget 64 directories
// down, where a walk of the job directory that stopped at some depth
// would not count them (the worker's walk goes 16 levels deep and takes a
// deeper tree as over budget), and then holds the space. In the
// downloader it never returns: it must be stopped with its job
// (OwnJob).
func deepFill(e *Env) error {
	if e.Domain != Downloader || e.DiskBudget <= 0 {
		return notHere("no job directory with a disk budget in this domain")
	}
	fd, err := unix.Open(".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	// By mkdirat and openat: no path grows past PATH_MAX. Mode 0700: let
	// nobody else look in (the attacker's choice).
	for range 64 {
		if err := unix.Mkdirat(fd, "d", 0o700); err != nil {
			return err
		}
		sub, err := unix.Openat(fd, "d", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		unix.Close(fd)
		if err != nil {
			return err
		}
		fd = sub
	}
	// Files of 32 MiB each, well under RLIMIT_FSIZE, until past the budget.
	chunk := make([]byte, 1<<20)
	for i, total := 0, int64(0); total <= e.DiskBudget; i++ {
		f, err := unix.Openat(fd, "fill"+strconv.Itoa(i), unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return err
		}
		for range 32 {
			n, err := unix.Write(f, chunk)
			total += int64(n)
			if err != nil {
				unix.Close(f)
				return err
			}
		}
		unix.Close(f)
	}
	for {
		time.Sleep(time.Hour)
	}
}

// ownJob are the attempts that end the job they run in when they are
// stopped: the suite runs each as a download of its own and judges it by
// how that job ends, rather than in the job that runs the others.
var ownJob = map[string]bool{"B83": true}

// OwnJob reports whether attempt id runs as a job of its own in the
// downloader (RunAll leaves it out).
func OwnJob(id string) bool { return ownJob[id] }

// payload is a complete static x86-64 program that prints "succeeded" and
// exits 0: what an attempt executes, so that the runner reports the
// attempt as succeeded when it runs at all. One loadable segment, at
// 0x400000, holding the ELF and program headers and then the code.
func payload() []byte {
	const base, headers = 0x400000, 64 + 56
	code := []byte{
		0xb8, 1, 0, 0, 0, // mov eax, 1 (write)
		0xbf, 1, 0, 0, 0, // mov edi, 1 (stdout)
		0x48, 0x8d, 0x35, 16, 0, 0, 0, // lea rsi, [rip+16] (the message)
		0xba, 10, 0, 0, 0, // mov edx, 10
		0x0f, 0x05, // syscall
		0xb8, 231, 0, 0, 0, // mov eax, 231 (exit_group)
		0x31, 0xff, // xor edi, edi
		0x0f, 0x05, // syscall
	}
	code = append(code, "succeeded\n"...)
	size := uint64(headers + len(code))
	le := binary.LittleEndian
	b := []byte{0x7f, 'E', 'L', 'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0} // 64-bit, little-endian
	b = le.AppendUint16(b, 2)                                            // ET_EXEC
	b = le.AppendUint16(b, 62)                                           // EM_X86_64
	b = le.AppendUint32(b, 1)                                            // version
	b = le.AppendUint64(b, base+headers)                                 // entry: the code
	b = le.AppendUint64(b, 64)                                           // program headers
	b = le.AppendUint64(b, 0)                                            // no section headers
	b = le.AppendUint32(b, 0)                                            // flags
	b = le.AppendUint16(b, 64)                                           // ELF header size
	b = le.AppendUint16(b, 56)                                           // program header size
	b = le.AppendUint16(b, 1)                                            // one program header
	b = le.AppendUint16(b, 64)                                           // section header size
	b = le.AppendUint16(b, 0)                                            // no sections
	b = le.AppendUint16(b, 0)                                            // no section names
	b = le.AppendUint32(b, 1)                                            // PT_LOAD
	b = le.AppendUint32(b, 5)                                            // read, execute
	b = le.AppendUint64(b, 0)                                            // from the start of the file
	b = le.AppendUint64(b, base)                                         // virtual address
	b = le.AppendUint64(b, base)                                         // physical address
	b = le.AppendUint64(b, size)                                         // file size
	b = le.AppendUint64(b, size)                                         // memory size
	b = le.AppendUint64(b, 0x1000)                                       // alignment
	return append(b, code...)
}

// execveat executes the file open at fd (AT_EMPTY_PATH): a file without a
// path, such as a memfd.
func execveat(fd int) error {
	empty, _ := unix.BytePtrFromString("")
	name, _ := unix.BytePtrFromString("payload")
	argv, envv := []*byte{name, nil}, []*byte{nil}
	_, _, en := unix.Syscall6(unix.SYS_EXECVEAT, uintptr(fd), uintptr(unsafe.Pointer(empty)),
		uintptr(unsafe.Pointer(&argv[0])), uintptr(unsafe.Pointer(&envv[0])), unix.AT_EMPTY_PATH, 0)
	return rawErr(en)
}

// rawClone forks by the raw clone system call, as native code would (not
// through Go's fork and exec, which would also exec), and returns the
// child's pid; the child exits at once. Between the clone and the child's
// exit nothing may grow the stack or reach the runtime: nosplit, norace,
// raw system calls only.
//
//go:nosplit
//go:norace
func rawClone(flags uintptr) (int, syscall.Errno) {
	pid, _, en := syscall.RawSyscall6(syscall.SYS_CLONE, flags|uintptr(syscall.SIGCHLD), 0, 0, 0, 0, 0)
	if en == 0 && pid == 0 {
		syscall.RawSyscall(syscall.SYS_EXIT_GROUP, 0, 0, 0)
	}
	return int(pid), en
}

// Domains names where an attempt runs.
const (
	Receiver   = "receiver"
	Worker     = "worker"
	Downloader = "downloader"
	Courier    = "courier"
)

// allowedIn lists, per attempt, the domains for which success is not an
// escape but the domain's own job (DESIGN §2): the receiver reads its
// secret, the worker owns the downloads and the job directories, the
// courier holds the bot token, opens the reply key and posts to Slack.
var allowedIn = map[string][]string{
	"B01": {Receiver}, "B04": {Receiver},
	// The receiver makes the reply key and seals with it; the courier
	// opens tokens with it (0640, its group: docs/courier.md).
	"B03": {Receiver, Courier},
	"B05": {Worker}, "B07": {Worker}, "B08": {Receiver, Worker},
	// The worker stores the videos; the courier reads them to upload
	// them (with the bot token and courier.max_upload_mb on).
	"B06": {Worker, Courier},
	// Each daemon owns its inbox: the worker incoming/ (a job the worker
	// wrote itself would fail the owner check), the courier results/
	// (likewise: it claims only the worker's files). The receiver,
	// which creates jobs, no longer reads results/: its group may create
	// there, its Landlock rules may not.
	"B10": {Receiver, Worker}, "B11": {Worker, Courier}, "B12": {Worker}, "B13": {Worker}, "B14": {Worker},
	// Each domain's own credential: read at start, before confinement,
	// so even the owner's later read is refused by Landlock.
	"B26": {Courier}, "B27": {Receiver},
	// Each domain's private files: the receiver's directory and key,
	// the worker's claimed jobs, the courier's records.
	"B28": {Receiver}, "B29": {Worker}, "B34": {Receiver}, "B35": {Courier},
	"B41": {Receiver, Courier}, // they post replies and alerts there
	// The worker owns incoming/ (it claims there) and the job root.
	"B24": {Worker}, "B25": {Worker},
	"B44": {Receiver, Courier}, // DNS
	// The receiver's and the courier's Landlock rules let them connect
	// to port 443 at any address (Slack has no stable address list:
	// docs/threat-model.md, "No IP allowlist"), and they resolve names
	// over UDP.
	"B48": {Receiver, Courier}, "B49": {Receiver, Courier}, "B91": {Receiver, Courier},
}

// AllowedIn reports whether attempt id may succeed in domain.
func AllowedIn(id, domain string) bool {
	for _, d := range allowedIn[id] {
		if d == domain {
			return true
		}
	}
	return false
}

// Catalog is every attempt, in order.
var Catalog = []Attempt{
	// Secrets and other users' files.
	{"B01", "read the Slack signing secret", []string{"landlock", "dac"}, Blocked, func(e *Env) error { return readFile(e.Secret) }},
	{"B02", "read /etc/shadow", []string{"landlock", "dac"}, Blocked, func(e *Env) error { return readFile("/etc/shadow") }},
	{"B03", "read the receiver's reply-sealing key", []string{"landlock", "dac"}, Blocked, func(e *Env) error { return readFile(filepath.Join(e.Spool, "receiver", "reply.key")) }},
	{"B04", "list the receiver's private spool dir", []string{"landlock", "dac"}, Blocked, func(e *Env) error { return listDir(filepath.Join(e.Spool, "receiver")) }},
	{"B05", "list incoming jobs", []string{"landlock", "dac"}, Blocked, func(e *Env) error { return listDir(filepath.Join(e.Spool, "incoming")) }},
	{"B06", "read a stored video", []string{"landlock", "dac"}, Blocked, func(e *Env) error { return readFile(e.StoredFile) }},
	{"B07", "list another job's directory", []string{"landlock", "dac"}, Blocked, func(e *Env) error { return listDir(e.OtherJob) }},
	{"B08", "read the configuration", []string{"landlock", "dac"}, Blocked, func(e *Env) error { return readFile(e.Config) }},
	{"B09", "run as root (uid 0)", []string{"dac"}, Blocked, func(e *Env) error {
		if os.Geteuid() == 0 || os.Getuid() == 0 {
			return nil
		}
		return unix.EPERM // the dedicated user: root's files and powers are out of reach
	}},
	{"B26", "read the courier's bot token", []string{"landlock", "dac"}, Blocked, func(e *Env) error { return readFile(e.BotToken) }},
	{"B27", "read the receiver's app-level token (Socket Mode)", []string{"landlock", "dac"}, Blocked, func(e *Env) error { return readFile(e.AppToken) }},
	{"B28", "read a private file of the receiver's by name (its directory lets the courier's group in, not list)", []string{"landlock", "dac"}, Blocked, func(e *Env) error {
		return readFile(e.ReceiverFile)
	}},
	{"B29", "read the worker's claimed jobs (their sealed reply tokens, which the reply key opens)", []string{"landlock", "dac"}, Blocked, func(e *Env) error {
		dir := filepath.Join(e.Spool, "worker", "claimed")
		ents, err := os.ReadDir(dir)
		if err != nil {
			return err
		}
		for _, ent := range ents {
			if err = readFile(filepath.Join(dir, ent.Name())); err == nil {
				return nil
			}
		}
		// Listing them already names every job in progress.
		how := "listed the worker's claimed jobs"
		if err != nil {
			how += "; reading one: " + describe(err)
		}
		return &reached{how}
	}},
	// Writes outside the job directory.
	{"B10", "forge a job in incoming/", []string{"landlock", "dac"}, Blocked, func(e *Env) error {
		return plant(e, filepath.Join(e.Spool, "incoming", "aaaaaaaaaaaaaaaaaaaaaaaaaa.job"))
	}},
	{"B11", "forge a result in results/", []string{"landlock", "dac"}, Blocked, func(e *Env) error {
		return plant(e, filepath.Join(e.Spool, "results", "aaaaaaaaaaaaaaaaaaaaaaaaaa.done.result"))
	}},
	{"B12", "plant a file in downloads/", []string{"landlock", "dac"}, Blocked, func(e *Env) error { return writeFile(filepath.Join(e.Downloads, "dQw4w9WgXcQ-best.mp4")) }},
	{"B13", "replace a stored video", []string{"landlock", "dac"}, Blocked, func(e *Env) error { return writeFile(e.StoredFile) }},
	{"B14", "write into another job's directory", []string{"landlock", "dac"}, Blocked, func(e *Env) error { return writeFile(filepath.Join(e.OtherJob, "poison.part")) }},
	{"B15", "install a cron job", []string{"landlock", "dac"}, Blocked, func(e *Env) error { return writeFile("/etc/cron.d/ytkeep-breach") }},
	{"B16", "write root's shell profile", []string{"landlock", "dac"}, Blocked, func(e *Env) error { return writeFile("/root/.bashrc-breach") }},
	{"B17", "write /tmp (shared with other services)", []string{"landlock"}, Blocked, func(e *Env) error {
		return writeFile(TmpLitter + strconv.Itoa(os.Getpid()))
	}},
	{"B18", "write a system-wide yt-dlp config", []string{"landlock", "dac"}, Blocked, func(e *Env) error { return writeFile("/etc/yt-dlp.conf") }},
	{"B19", "plant a yt-dlp plugin", []string{"landlock", "dac"}, Blocked, func(e *Env) error {
		return writeFile("/usr/lib/python3/dist-packages/yt_dlp_plugins_breach.py")
	}},
	{"B20", "poison python's sitecustomize", []string{"landlock", "dac"}, Blocked, func(e *Env) error { return writeFile("/usr/lib/python3/dist-packages/sitecustomize.py") }},
	{"B34", "open the reply key for writing (to forge every job's reply token)", []string{"landlock", "dac"}, Blocked, func(e *Env) error {
		// Opened, never written: in the receiver, its owner, it must stay
		// the key the courier opens.
		f, err := os.OpenFile(filepath.Join(e.Spool, "receiver", "reply.key"), os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		return f.Close()
	}},
	{"B35", "rewrite the courier's records (a job's post budget in courier/replies/)", []string{"landlock", "dac"}, Blocked, func(e *Env) error {
		return writeFile(filepath.Join(e.Spool, "courier", "replies", CourierRecord))
	}},
	// Links and special files in the job directory.
	{"B21", "symlink to the secret in the job dir", []string{"landlock", "seccomp"}, Blocked, func(e *Env) error { return os.Symlink(e.Secret, "dQw4w9WgXcQ.mp4") }},
	{"B22", "hard link a stored video into the job dir", []string{"landlock"}, Blocked, func(e *Env) error { return os.Link(e.StoredFile, "stolen.mp4") }},
	{"B23", "FIFO in the job dir", []string{"landlock", "seccomp"}, Blocked, func(e *Env) error { return unix.Mkfifo("dQw4w9WgXcQ.webm", 0o600) }},
	{"B24", "swap a queued job for a symlink to the secret (claim race)", []string{"landlock", "spool-checks"}, Blocked, func(e *Env) error {
		// The claim renames and then refuses anything but a regular,
		// singly linked file opened with O_NOFOLLOW; Landlock refuses the
		// symlink in the first place.
		return os.Symlink(e.Secret, filepath.Join(e.Spool, "incoming", "bbbbbbbbbbbbbbbbbbbbbbbbbb.job"))
	}},
	{"B25", "poison the next job's yt-dlp cache and config", []string{"landlock"}, Blocked, func(e *Env) error {
		// Every job has a fresh HOME (its own directory); the only place
		// shared between jobs is the job root above them.
		for _, d := range []string{".cache/yt-dlp", ".config"} {
			if err := os.MkdirAll(filepath.Join(e.JobRoot, d), 0o755); err != nil {
				return err
			}
		}
		return writeFile(filepath.Join(e.JobRoot, ".config", "yt-dlp.conf"))
	}},
	// Execution.
	{"B30", "run a program dropped in the job dir", []string{"landlock", "seccomp"}, Blocked, func(e *Env) error {
		if err := os.WriteFile("payload", []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
			return err // could not even drop it
		}
		return exec.Command("./payload").Run()
	}},
	{"B31", "a shell stays in the sandbox", []string{"landlock", "seccomp"}, Contained, func(e *Env) error {
		// A shell may start (/bin is executable) but must not reach the secret.
		if exec.Command("/bin/sh", "-c", "cat "+e.Secret+" >/dev/null").Run() == nil {
			return nil
		}
		return errors.New("contained")
	}},
	{"B32", "gain root through a setuid-root program", []string{"nnp", "seccomp"}, Blocked, func(e *Env) error {
		if os.Getuid() == 0 {
			return errors.New("already root (see B09)")
		}
		out, err := exec.Command(e.Setuid, "whoami").Output()
		if err != nil {
			return err
		}
		if got := strings.TrimSpace(string(out)); got != "euid=0" {
			return fmt.Errorf("no gain: %s", got)
		}
		return nil
	}},
	{"B33", "run a program from a memfd (no path for Landlock to check)", []string{"seccomp"}, Blocked, func(e *Env) error {
		// Landlock's execute right is checked on paths; a memfd lives on an
		// internal mount it does not see. The payload prints "succeeded".
		fd, err := unix.MemfdCreate("payload", 0)
		if err != nil {
			return err
		}
		if _, err := unix.Write(fd, payload()); err != nil {
			return err
		}
		return execveat(fd)
	}},
	// Network.
	{"B40", "connect to the receiver's port", []string{"landlock", "broker"}, Blocked, func(e *Env) error { return tcpConnect(e.ReceiverPort) }},
	{"B41", "connect to the Slack endpoint (exfiltrate)", []string{"landlock", "broker"}, Blocked, func(e *Env) error { return tcpConnect(e.SlackPort) }},
	{"B42", "listen on a TCP port", []string{"landlock", "seccomp"}, Blocked, func(e *Env) error {
		// Plain TCP: Go's net.Listen would use MPTCP, which seccomp kills.
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		if err := unix.Bind(fd, &unix.SockaddrInet4{Port: 0, Addr: [4]byte{127, 0, 0, 1}}); err != nil {
			return err
		}
		return unix.Listen(fd, 1)
	}},
	{"B43", "connect over MPTCP (escapes Landlock's TCP rules)", []string{"seccomp", "broker", "sysctl"}, Blocked, func(e *Env) error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, unix.IPPROTO_MPTCP)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		return unix.Connect(fd, &unix.SockaddrInet4{Port: e.ReceiverPort, Addr: [4]byte{127, 0, 0, 1}})
	}},
	{"B44", "send UDP on loopback", nil, Accepted, func(e *Env) error {
		c, err := net.Dial("udp4", "127.0.0.1:9")
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write([]byte("x"))
		return err
	}},
	{"B45", "abstract unix socket", []string{"seccomp", "landlock-scope"}, Blocked, func(e *Env) error {
		fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		return unix.Connect(fd, &unix.SockaddrUnix{Name: "@ytkeep-breach"})
	}},
	{"B46", "pathname unix socket (system D-Bus)", []string{"seccomp", "dac"}, Blocked, func(e *Env) error {
		c, err := net.Dial("unix", "/run/dbus/system_bus_socket")
		if err == nil {
			c.Close()
		}
		return err
	}},
	// Network under the production policy (docs/egress.md): the
	// children's one way out is the egress proxy's port. Directly, each
	// attempt counts as blocked only when the sandbox refuses it (EACCES,
	// EPERM) or kills it: a timeout, a refusal by the far end or a missing
	// route means the packet was allowed out. The suite listens on
	// 127.0.0.1:443 and :80 as root, so that B48 can connect.
	{"B47", "connect directly to the cloud metadata address (169.254.169.254:80)", []string{"landlock", "broker"}, Blocked, func(e *Env) error {
		return connectEach("169.254.169.254:80")
	}},
	{"B48", "connect directly to a loopback web server (127.0.0.1:443, :80)", []string{"landlock", "broker"}, Blocked, func(e *Env) error {
		return connectEach("127.0.0.1:443", "127.0.0.1:80")
	}},
	{"B49", "connect directly to private addresses (10.0.0.1:443, 192.168.0.1:443)", []string{"landlock", "broker"}, Blocked, func(e *Env) error {
		return connectEach("10.0.0.1:443", "192.168.0.1:443")
	}},
	{"B99", "connect directly to a loopback web server on port 80 alone (127.0.0.1:80: B48 stops at 443 where that is allowed)", []string{"landlock", "broker"}, Blocked, func(e *Env) error {
		return connectEach("127.0.0.1:80")
	}},
	{"B90", "connect directly to the test media server (the proxy's one loopback origin)", []string{"landlock", "broker"}, Blocked, func(e *Env) error {
		if e.MediaPort == 0 {
			return notHere("no media server")
		}
		return connectEach("127.0.0.1:" + strconv.Itoa(e.MediaPort))
	}},
	{"B91", "send a DNS query over UDP to the local resolvers", []string{"seccomp", "broker"}, Blocked, func(e *Env) error {
		return sendUDP(dnsQuery("metadata.google.internal"), resolvers()...)
	}},
	{"B97", "connect with TCP Fast Open (a send that connects, no connect call) to the receiver's port", []string{"seccomp", "broker", "sysctl"}, Blocked, func(e *Env) error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		err = unix.Sendto(fd, []byte("x"), unix.MSG_FASTOPEN, &unix.SockaddrInet4{Port: e.ReceiverPort, Addr: [4]byte{127, 0, 0, 1}})
		switch {
		case err == nil:
			return &reached{"sent to the receiver's port with TCP Fast Open"}
		case !sandboxRefused(err):
			return &reached{"TCP Fast Open to the receiver's port was not refused in the sandbox (" + describe(err) + ")"}
		}
		return err
	}},
	// Through the egress proxy, with the job's own credentials: blocked
	// only on its refusal (403). The proxy has no ablation switch.
	{"B92", "proxy: CONNECT to a host not on the allowlist (example.com:443)", []string{"egress-proxy"}, Blocked, func(e *Env) error {
		return proxyConnect(e, "example.com:443")
	}},
	{"B93", "proxy: CONNECT to IP literals (1.1.1.1:443, 127.0.0.1:443, the receiver's port)", []string{"egress-proxy"}, Blocked, func(e *Env) error {
		return proxyConnect(e, "1.1.1.1:443", "127.0.0.1:443", "127.0.0.1:"+strconv.Itoa(e.ReceiverPort))
	}},
	{"B94", "proxy: CONNECT to the metadata address (169.254.169.254:443)", []string{"egress-proxy"}, Blocked, func(e *Env) error {
		return proxyConnect(e, "169.254.169.254:443")
	}},
	{"B95", "proxy: CONNECT to internal names (localhost, metadata.google.internal)", []string{"egress-proxy"}, Blocked, func(e *Env) error {
		return proxyConnect(e, "localhost:443", "metadata.google.internal:443")
	}},
	{"B96", "proxy: CONNECT to an allowed name that resolves to loopback", []string{"egress-proxy"}, Blocked, func(e *Env) error {
		return proxyConnect(e, RebindName+":443")
	}},
	// Other processes.
	{"B50", "ptrace the launcher server", []string{"seccomp", "landlock"}, Blocked, func(e *Env) error {
		err := unix.PtraceAttach(e.Server)
		if err == nil {
			unix.PtraceDetach(e.Server)
		}
		return err
	}},
	{"B51", "process_vm_readv the launcher server", []string{"seccomp"}, Blocked, func(e *Env) error {
		// A real read: with no iovec the kernel returns 0 before any
		// permission check. Any address will do: EFAULT means the
		// permission check passed, which is the escape.
		var buf [8]byte
		local := unix.Iovec{Base: &buf[0], Len: 8}
		remote := unix.RemoteIovec{Base: 0x10000, Len: 8}
		_, err := unix.ProcessVMReadv(e.Server, []unix.Iovec{local}, []unix.RemoteIovec{remote}, 0)
		if errors.Is(err, unix.EFAULT) {
			return nil
		}
		return err
	}},
	{"B98", "change the launcher server's resource limits (prlimit; the same values, harmless)", []string{"seccomp", "dac"}, Blocked, func(e *Env) error {
		// Cutting RLIMIT_CPU or RLIMIT_NOFILE would end or starve it;
		// reading then writing back what it has shows the same reach.
		var l unix.Rlimit
		if err := unix.Prlimit(e.Server, unix.RLIMIT_NOFILE, nil, &l); err != nil {
			return err
		}
		return unix.Prlimit(e.Server, unix.RLIMIT_NOFILE, &l, nil)
	}},
	{"B52", "signal the launcher server (its pid, and each of its thread ids)", []string{"landlock-scope", "seccomp", "broker"}, Blocked, func(e *Env) error {
		first := unix.Kill(e.Server, 0)
		if first == nil || !sandboxRefused(first) {
			return first
		}
		// Any thread id of the server's signals it too. Where its task
		// list cannot be read (Landlock), only the pid is tried: a guess
		// could hit another process of the same user.
		ents, _ := os.ReadDir("/proc/" + strconv.Itoa(e.Server) + "/task")
		for _, ent := range ents {
			tid, err := strconv.Atoi(ent.Name())
			if err != nil || tid == e.Server {
				continue
			}
			if err := unix.Kill(tid, 0); err == nil {
				return &reached{"signalled the server through its thread " + ent.Name()}
			} else if !sandboxRefused(err) && !errors.Is(err, unix.ESRCH) {
				return err
			}
		}
		return first
	}},
	{"B53", "read the launcher server's environment", []string{"landlock"}, Blocked, func(e *Env) error { return readFile("/proc/" + strconv.Itoa(e.Server) + "/environ") }},
	{"B54", "write /proc/self/mem", []string{"landlock"}, Blocked, func(e *Env) error { return writeFile("/proc/self/mem") }},
	// Kernel attack surface.
	{"B60", "mount a file system", []string{"seccomp"}, Blocked, func(e *Env) error { return unix.Mount("none", "/mnt", "tmpfs", 0, "") }},
	{"B61", "unshare a user namespace", []string{"seccomp"}, Blocked, func(e *Env) error { return unix.Unshare(unix.CLONE_NEWUSER) }},
	{"B62", "setns into init's mount namespace", []string{"seccomp"}, Blocked, func(e *Env) error {
		_, _, en := unix.Syscall(unix.SYS_SETNS, 0, 0, 0)
		return rawErr(en)
	}},
	{"B63", "keyctl: read the session keyring", []string{"seccomp"}, Blocked, func(e *Env) error {
		_, err := unix.KeyctlInt(unix.KEYCTL_GET_KEYRING_ID, unix.KEY_SPEC_SESSION_KEYRING, 0, 0, 0)
		return err
	}},
	{"B64", "io_uring_setup", []string{"seccomp"}, Blocked, func(e *Env) error {
		_, _, en := unix.Syscall(unix.SYS_IO_URING_SETUP, 1, 0, 0)
		return rawErr(en)
	}},
	{"B65", "userfaultfd", []string{"seccomp"}, Blocked, func(e *Env) error {
		_, _, en := unix.Syscall(unix.SYS_USERFAULTFD, 0, 0, 0)
		return rawErr(en)
	}},
	{"B66", "bpf", []string{"seccomp"}, Blocked, func(e *Env) error {
		_, _, en := unix.Syscall(unix.SYS_BPF, 0, 0, 0)
		return rawErr(en)
	}},
	{"B67", "perf_event_open", []string{"seccomp"}, Blocked, func(e *Env) error {
		_, _, en := unix.Syscall6(unix.SYS_PERF_EVENT_OPEN, 0, 0, ^uintptr(0), ^uintptr(0), 0, 0)
		return rawErr(en)
	}},
	{"B68", "i386 system call via int 0x80", []string{"seccomp"}, Blocked, func(e *Env) error { int80Getpid(); return nil }},
	{"B69", "chroot", []string{"seccomp"}, Blocked, func(e *Env) error { return unix.Chroot(".") }},
	{"B70", "setsid (leave the process group)", []string{"seccomp"}, Blocked, func(e *Env) error { _, err := unix.Setsid(); return err }},
	{"B71", "disable ASLR with personality", []string{"seccomp"}, Blocked, func(e *Env) error {
		_, _, en := unix.Syscall(unix.SYS_PERSONALITY, 0x0040000, 0, 0) // ADDR_NO_RANDOMIZE
		return rawErr(en)
	}},
	{"B72", "load a kernel module", []string{"seccomp"}, Blocked, func(e *Env) error {
		_, _, en := unix.Syscall(unix.SYS_FINIT_MODULE, 0, 0, 0)
		return rawErr(en)
	}},
	{"B73", "clone a child into a new user namespace", []string{"seccomp"}, Blocked, func(e *Env) error {
		// By the raw clone call the daemons' allowlists permit for the
		// runtime's threads (unshare and clone3 have their own rules).
		pid, en := rawClone(unix.CLONE_NEWUSER)
		if en != 0 {
			return en
		}
		unix.Wait4(pid, nil, 0, nil) // refused in the daemons: a zombie until exit
		return nil                   // a child was created: the escape
	}},
	{"B74", "setpgid: a child leaves the process group, to outlive the job", []string{"seccomp"}, Blocked, func(e *Env) error {
		// Go's fork calls setpgid(0, 0) in the child before exec, as
		// glibc's setpgrp and Python's subprocess with process_group do.
		// (On the attempt itself it would prove nothing: a group's leader
		// is already in a group of its own.) The children's filter kills
		// the child at the call; were it let through, the launcher server,
		// the children's subreaper, would still kill it when the job ends
		// (sandbox.TestEscapedProcessIsKilled).
		cmd := exec.Command("/bin/sleep", "30")
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			return err // the daemons: exec kills them, setpgid is not allowed
		}
		g, err := unix.Getpgid(cmd.Process.Pid)
		cmd.Process.Kill()
		state := cmd.Wait()
		if err != nil || g == unix.Getpgrp() {
			return fmt.Errorf("the child stayed in the group (%v)", state)
		}
		return nil // it left the group: the escape
	}},
	// Resources.
	{"B80", "write a file past RLIMIT_FSIZE", []string{"rlimit"}, Blocked, func(e *Env) error {
		// An unnamed file (O_TMPFILE): RLIMIT_FSIZE is all that is
		// measured here, and a named 1 TiB file would also trip the
		// worker's disk budget, which ends the download (and this run's
		// report) when rlimits are switched off.
		fd, err := unix.Open(".", unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return err
		}
		f := os.NewFile(uintptr(fd), "big")
		defer f.Close()
		// FSIZE is the size cap plus 64 MiB; go well past it.
		_, err = f.WriteAt([]byte("x"), 1<<40)
		return err
	}},
	{"B83", "fill the disk from 64 directories down, past the job's disk budget", []string{"disk-budget"}, Blocked, deepFill},
	{"B82", "exhaust memory: write 4 GiB", []string{"rlimit", "systemd"}, Blocked, func(e *Env) error {
		const size = 4 << 30
		b, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
		if err != nil {
			return err
		}
		defer unix.Munmap(b)
		for i := 0; i < size; i += 4096 {
			b[i] = 1
		}
		return nil
	}},
	// B81 stays last: in the daemons (which never reap) its children
	// linger as zombies until init collects them, and count against the
	// test user's RLIMIT_NPROC for whatever runs next as that user.
	{"B81", "fork bomb: 2000 processes alive at once", []string{"rlimit", "seccomp", "systemd"}, Contained, func(e *Env) error {
		var alive []int
		defer func() {
			for _, pid := range alive {
				unix.Kill(pid, unix.SIGKILL)
				unix.Wait4(pid, nil, 0, nil)
			}
		}()
		var spawned []int
		var stop error
		for i := 0; i < 2000; i++ {
			p, err := os.StartProcess("/bin/sleep", []string{"sleep", "30"}, &os.ProcAttr{})
			if err != nil {
				stop = err
				break
			}
			spawned = append(spawned, p.Pid)
		}
		// Count what is still alive a moment later: a child killed on its way
		// (by seccomp at exec) has exited by then. Where wait4 is refused
		// (the daemons never wait), zombies count as alive: they hold a PID.
		time.Sleep(500 * time.Millisecond)
		for _, pid := range spawned {
			var ws unix.WaitStatus
			if got, _ := unix.Wait4(pid, &ws, unix.WNOHANG, nil); got == pid {
				continue
			}
			alive = append(alive, pid)
		}
		if len(alive) < 2000 {
			return fmt.Errorf("contained: %d alive (%v)", len(alive), stop)
		}
		return nil // 2000 processes alive: not contained
	}},
}
