//go:build breach

package breach

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
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
	// Setuid is a setuid-root program that prints its effective uid
	// (the runner in "whoami" mode), installed by the suite.
	Setuid                  string
	ReceiverPort, SlackPort int
	// Server is the launcher server's pid: the runner's parent, outside the
	// downloader's own Landlock domain. (An attempt's own parent is the
	// runner, inside it.)
	Server int
}

// LoadEnv reads the targets.
func LoadEnv() *Env {
	g := func(k string) string { return os.Getenv("YTKEEP_BREACH_" + k) }
	p, _ := strconv.Atoi(g("RECEIVER_PORT"))
	sp, _ := strconv.Atoi(g("SLACK_PORT"))
	srv, _ := strconv.Atoi(g("SERVER"))
	return &Env{Secret: g("SECRET"), Spool: g("SPOOL"), Downloads: g("DOWNLOADS"), JobRoot: g("JOBROOT"),
		OtherJob: g("OTHERJOB"), StoredFile: g("STORED"), Config: g("CONFIG"), ReceiverPort: p, SlackPort: sp, Server: srv,
		Setuid: g("SETUID")}
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

func readFile(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.Read(make([]byte, 1))
	return err
}

func writeFile(p string) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	return f.Close()
}

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
)

// allowedIn lists, per attempt, the domains for which success is not an
// escape but the domain's own job (DESIGN §2): the receiver reads its
// secret, the worker owns the downloads and the job directories.
var allowedIn = map[string][]string{
	"B01": {Receiver}, "B03": {Receiver}, "B04": {Receiver},
	"B05": {Worker}, "B06": {Worker}, "B07": {Worker}, "B08": {Receiver, Worker},
	// Each daemon owns its inbox: the receiver results/, the worker
	// incoming/ (a job the worker wrote itself would fail the owner check).
	"B10": {Receiver, Worker}, "B11": {Worker, Receiver}, "B12": {Worker}, "B13": {Worker}, "B14": {Worker},
	"B41": {Receiver}, // it posts replies there
	// The worker owns incoming/ (it claims there) and the job root.
	"B24": {Worker}, "B25": {Worker},
	"B44": {Receiver}, // DNS
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
	{"B05", "list incoming jobs", []string{"landlock"}, Blocked, func(e *Env) error { return listDir(filepath.Join(e.Spool, "incoming")) }},
	{"B06", "read a stored video", []string{"landlock"}, Blocked, func(e *Env) error { return readFile(e.StoredFile) }},
	{"B07", "list another job's directory", []string{"landlock"}, Blocked, func(e *Env) error { return listDir(e.OtherJob) }},
	{"B08", "read the configuration", []string{"landlock"}, Blocked, func(e *Env) error { return readFile(e.Config) }},
	{"B09", "run as root (uid 0)", []string{"dac"}, Blocked, func(e *Env) error {
		if os.Geteuid() == 0 || os.Getuid() == 0 {
			return nil
		}
		return unix.EPERM // the dedicated user: root's files and powers are out of reach
	}},
	// Writes outside the job directory.
	{"B10", "forge a job in incoming/", []string{"landlock"}, Blocked, func(e *Env) error {
		return plant(e, filepath.Join(e.Spool, "incoming", "aaaaaaaaaaaaaaaaaaaaaaaaaa.job"))
	}},
	{"B11", "forge a result in results/", []string{"landlock", "dac"}, Blocked, func(e *Env) error {
		return plant(e, filepath.Join(e.Spool, "results", "aaaaaaaaaaaaaaaaaaaaaaaaaa.done.result"))
	}},
	{"B12", "plant a file in downloads/", []string{"landlock"}, Blocked, func(e *Env) error { return writeFile(filepath.Join(e.Downloads, "dQw4w9WgXcQ-best.mp4")) }},
	{"B13", "replace a stored video", []string{"landlock", "dac"}, Blocked, func(e *Env) error { return writeFile(e.StoredFile) }},
	{"B14", "write into another job's directory", []string{"landlock"}, Blocked, func(e *Env) error { return writeFile(filepath.Join(e.OtherJob, "poison.part")) }},
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
	// Links and special files in the job directory.
	{"B21", "symlink to the secret in the job dir", []string{"landlock"}, Blocked, func(e *Env) error { return os.Symlink(e.Secret, "dQw4w9WgXcQ.mp4") }},
	{"B22", "hard link a stored video into the job dir", []string{"landlock"}, Blocked, func(e *Env) error { return os.Link(e.StoredFile, "stolen.mp4") }},
	{"B23", "FIFO in the job dir", []string{"landlock"}, Blocked, func(e *Env) error { return unix.Mkfifo("dQw4w9WgXcQ.webm", 0o600) }},
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
	{"B30", "run a program dropped in the job dir", []string{"landlock"}, Blocked, func(e *Env) error {
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
	{"B40", "connect to the receiver's port", []string{"landlock"}, Blocked, func(e *Env) error { return tcpConnect(e.ReceiverPort) }},
	{"B41", "connect to the Slack endpoint (exfiltrate)", []string{"landlock"}, Blocked, func(e *Env) error { return tcpConnect(e.SlackPort) }},
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
	{"B43", "connect over MPTCP (escapes Landlock's TCP rules)", []string{"seccomp", "sysctl"}, Blocked, func(e *Env) error {
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
	{"B52", "signal the launcher server", []string{"landlock-scope"}, Blocked, func(e *Env) error { return unix.Kill(e.Server, 0) }},
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
