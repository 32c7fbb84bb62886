package confine

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Each layer test re-executes the test binary with YTKEEP_LAYER_CASE set:
// the subprocess applies one layer of one domain, makes one escape
// attempt and prints what happened. A restriction cannot be undone, so it
// must not touch the test process itself.

const caseEnv = "YTKEEP_LAYER_CASE"

func TestMain(m *testing.M) {
	if c := os.Getenv(caseEnv); c != "" {
		runCase(c)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// outcome of an attempt in the subprocess.
func report(err error) {
	var errno syscall.Errno
	switch {
	case err == nil:
		fmt.Println("ok")
	case errors.As(err, &errno):
		fmt.Println(unix.ErrnoName(errno))
	default:
		fmt.Println("error:", err)
	}
}

func must(err error) {
	if err != nil {
		fmt.Println("setup failed:", err)
		os.Exit(3)
	}
}

func env(k string) string { return os.Getenv("YTKEEP_" + k) }

func port(k string) uint16 {
	p, _ := strconv.Atoi(env(k))
	return uint16(p)
}

// victim is a sacrificial process of the same user: an attempt that
// succeeds against it harms nothing (the test's own process must never be
// the target).
func victim() int {
	n, _ := strconv.Atoi(env("VICTIM"))
	return n
}

func readFile(p string) error {
	f, err := os.Open(p)
	if err == nil {
		f.Close()
	}
	return err
}

func writeFile(p string) error { return os.WriteFile(p, []byte("x"), 0o600) }

func connect(p uint16) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return unix.Connect(fd, &unix.SockaddrInet4{Port: int(p), Addr: [4]byte{127, 0, 0, 1}})
}

func bind(p uint16) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return unix.Bind(fd, &unix.SockaddrInet4{Port: int(p), Addr: [4]byte{127, 0, 0, 1}})
}

// rawClone forks by the raw clone system call, as an attacker's native
// code would (not through Go's fork and exec), and returns the child's
// pid; the child exits at once. Nothing may run between the clone and the
// child's exit that could grow the stack or reach the runtime (or the
// race detector), hence nosplit and norace and only raw system calls.
//
//go:nosplit
//go:norace
func rawClone(flags uintptr) (int, syscall.Errno) {
	pid, _, e := syscall.RawSyscall6(syscall.SYS_CLONE, flags|uintptr(syscall.SIGCHLD), 0, 0, 0, 0, 0)
	if e == 0 && pid == 0 {
		syscall.RawSyscall(syscall.SYS_EXIT_GROUP, 0, 0, 0)
	}
	return int(pid), e
}

// cloneChild reports whether clone with flags made a child (nil), or
// the error. The child is reaped where wait4 is allowed; elsewhere it
// stays a zombie until the case's process exits.
func cloneChild(flags uintptr) error {
	pid, e := rawClone(flags)
	if e != 0 {
		return e
	}
	var ws unix.WaitStatus
	unix.Wait4(pid, &ws, 0, nil)
	return nil
}

// execveat runs the program open at fd (execveat with AT_EMPTY_PATH): the
// way to execute a file that has no path, such as a memfd.
func execveat(fd int, argv ...string) error {
	empty, _ := unix.BytePtrFromString("")
	args := make([]*byte, len(argv)+1)
	for i, a := range argv {
		args[i], _ = unix.BytePtrFromString(a)
	}
	env := []*byte{nil}
	_, _, e := unix.Syscall6(unix.SYS_EXECVEAT, uintptr(fd), uintptr(unsafe.Pointer(empty)),
		uintptr(unsafe.Pointer(&args[0])), uintptr(unsafe.Pointer(&env[0])), unix.AT_EMPTY_PATH, 0)
	return errnoOrNil(e)
}

// memfdExec copies /bin/echo into a memfd and executes it from there: on
// success the process prints "executed" and nothing else.
func memfdExec() error {
	prog, err := os.ReadFile("/bin/echo")
	if err != nil {
		return err
	}
	fd, err := unix.MemfdCreate("payload", 0)
	if err != nil {
		return err
	}
	if _, err := unix.Write(fd, prog); err != nil {
		return err
	}
	return execveat(fd, "echo", "executed")
}

// sysvCalls are the System V IPC calls, each with arguments that make it
// fail harmlessly (a key that does not exist, an invalid id) when it is
// allowed at all.
var sysvCalls = map[string][4]uintptr{
	"shmget":     {unix.SYS_SHMGET, 0x79746b70, 4096, 0},
	"shmat":      {unix.SYS_SHMAT, ^uintptr(0), 0, 0},
	"shmdt":      {unix.SYS_SHMDT, 0, 0, 0},
	"shmctl":     {unix.SYS_SHMCTL, ^uintptr(0), unix.IPC_STAT, 0},
	"msgget":     {unix.SYS_MSGGET, 0x79746b70, 0, 0},
	"msgsnd":     {unix.SYS_MSGSND, ^uintptr(0), 0, 0},
	"msgrcv":     {unix.SYS_MSGRCV, ^uintptr(0), 0, 0},
	"msgctl":     {unix.SYS_MSGCTL, ^uintptr(0), unix.IPC_STAT, 0},
	"semget":     {unix.SYS_SEMGET, 0x79746b70, 1, 0},
	"semop":      {unix.SYS_SEMOP, ^uintptr(0), 0, 0},
	"semtimedop": {unix.SYS_SEMTIMEDOP, ^uintptr(0), 0, 0},
	"semctl":     {unix.SYS_SEMCTL, ^uintptr(0), 0, unix.IPC_STAT},
}

func receiverRules() *Rules {
	return ReceiverRules(ReceiverParams{ConfigFile: env("CONFIG"), ReadFiles: []string{env("SECRET")},
		SpoolDirs: []string{env("SPOOL")}, DropDirs: []string{env("DROP")}, ListenPort: port("LISTEN"), ConnectPorts: []uint16{port("ALLOWED")}})
}

// courierRules: the reply key (KEY) and its spool dirs (SPOOL); DROP, the
// receiver's incoming/, is not among them.
func courierRules() *Rules {
	return CourierRules(CourierParams{ConfigFile: env("CONFIG"), ReadFiles: []string{env("KEY")},
		SpoolDirs: []string{env("SPOOL")}, ConnectPorts: []uint16{port("ALLOWED")}})
}

// uploadingCourierRules: courierRules with uploads on, the stored files
// (here OTHER's directory) read only.
func uploadingCourierRules() *Rules {
	r := courierRules()
	*r = *CourierRules(CourierParams{ConfigFile: env("CONFIG"), ReadFiles: []string{env("KEY")},
		ReadDirs: []string{filepath.Dir(env("OTHER"))}, SpoolDirs: []string{env("SPOOL")}, ConnectPorts: []uint16{port("ALLOWED")}})
	return r
}

func workerRules() *Rules {
	return WorkerRules(WorkerParams{ConfigFile: env("CONFIG"), WriteDirs: []string{env("SPOOL")}})
}

func downloaderRules() *Rules {
	return DownloaderRules(DownloaderParams{JobRoot: env("JOB"), ConnectPorts: []uint16{port("ALLOWED")}})
}

func runCase(c string) {
	if call, ok := strings.CutPrefix(c, "downloader-seccomp-sysv-"); ok {
		// System V IPC, each call by itself: kernel surface nothing needs.
		a, known := sysvCalls[call]
		if !known {
			fmt.Println("unknown case", c)
			os.Exit(4)
		}
		must(Seccomp(Downloader))
		_, _, e := unix.Syscall6(a[0], a[1], a[2], a[3], 0, 0, 0)
		report(errnoOrNil(e))
		return
	}
	switch c {
	// Receiver, Landlock.
	case "receiver-landlock-read-secret":
		must(Landlock(receiverRules()))
		report(readFile(env("SECRET")))
	case "receiver-landlock-read-outside":
		must(Landlock(receiverRules()))
		report(readFile(env("OTHER")))
	case "receiver-landlock-read-shadow":
		must(Landlock(receiverRules()))
		report(readFile("/etc/shadow"))
	case "receiver-landlock-write-outside":
		must(Landlock(receiverRules()))
		report(writeFile(filepath.Join(filepath.Dir(env("OTHER")), "new")))
	case "receiver-landlock-drop-rename-in":
		// What the spool writer does: create privately, rename in.
		must(Landlock(receiverRules()))
		tmp := filepath.Join(env("SPOOL"), "new.job")
		must(writeFile(tmp))
		report(os.Rename(tmp, filepath.Join(env("DROP"), "new.job")))
	case "receiver-landlock-drop-write":
		must(Landlock(receiverRules()))
		report(writeFile(filepath.Join(env("DROP"), "direct.job")))
	case "receiver-landlock-drop-read":
		must(Landlock(receiverRules()))
		report(readFile(filepath.Join(env("DROP"), "theirs.job")))
	case "receiver-landlock-drop-list":
		must(Landlock(receiverRules()))
		_, err := os.ReadDir(env("DROP"))
		report(err)
	case "receiver-landlock-drop-remove":
		must(Landlock(receiverRules()))
		report(os.Remove(filepath.Join(env("DROP"), "theirs.job")))
	case "receiver-landlock-connect-allowed":
		must(Landlock(receiverRules()))
		report(connect(port("ALLOWED")))
	case "receiver-landlock-connect-other":
		must(Landlock(receiverRules()))
		report(connect(port("OTHERPORT")))
	case "receiver-landlock-bind-other":
		must(Landlock(receiverRules()))
		report(bind(port("FREE")))
	case "receiver-socket-landlock-bind", "receiver-socket-landlock-bind-ephemeral":
		// Socket Mode: no port of its own, so no bind right at all, not
		// even an ephemeral port (0).
		r := receiverRules()
		*r = *ReceiverRules(ReceiverParams{ConfigFile: env("CONFIG"), SpoolDirs: []string{env("SPOOL")}, ConnectPorts: []uint16{port("ALLOWED")}})
		must(Landlock(r))
		if c == "receiver-socket-landlock-bind" {
			report(bind(port("LISTEN")))
		} else {
			report(bind(0))
		}
	// Courier, Landlock: its key and spool, Slack's port; not the
	// intake's secret, not incoming/ (it may never queue a job), no
	// port of its own, nothing to run.
	case "courier-landlock-read-key":
		must(Landlock(courierRules()))
		report(readFile(env("KEY")))
	case "courier-landlock-read-secret":
		must(Landlock(courierRules()))
		report(readFile(env("SECRET")))
	case "courier-landlock-write-spool":
		must(Landlock(courierRules()))
		report(writeFile(filepath.Join(env("SPOOL"), "courier.json")))
	case "courier-landlock-drop-job":
		must(Landlock(courierRules()))
		report(writeFile(filepath.Join(env("DROP"), "forged.job")))
	case "courier-landlock-connect-allowed":
		must(Landlock(courierRules()))
		report(connect(port("ALLOWED")))
	case "courier-landlock-connect-other":
		must(Landlock(courierRules()))
		report(connect(port("OTHERPORT")))
	case "courier-landlock-bind":
		must(Landlock(courierRules()))
		report(bind(0))
	case "courier-landlock-read-downloads":
		must(Landlock(uploadingCourierRules()))
		report(readFile(env("OTHER")))
	case "courier-landlock-write-downloads":
		must(Landlock(uploadingCourierRules()))
		report(writeFile(filepath.Join(filepath.Dir(env("OTHER")), "planted.mp4")))
	case "courier-landlock-read-downloads-off":
		must(Landlock(courierRules()))
		report(readFile(env("OTHER")))
	case "courier-landlock-exec":
		must(Landlock(courierRules()))
		report(syscall.Exec("/bin/true", []string{"true"}, nil))
	case "receiver-landlock-exec":
		must(Landlock(receiverRules()))
		report(syscall.Exec("/bin/true", []string{"true"}, nil))
	// Receiver, seccomp.
	case "receiver-seccomp-execve":
		must(Seccomp(Receiver))
		report(syscall.Exec("/bin/true", []string{"true"}, nil))
	case "receiver-seccomp-ptrace":
		must(Seccomp(Receiver))
		report(unix.PtraceAttach(victim()))
	case "receiver-seccomp-prlimit-other":
		must(Seccomp(Receiver))
		var l unix.Rlimit
		report(unix.Prlimit(victim(), unix.RLIMIT_NOFILE, nil, &l))
	case "downloader-seccomp-prlimit-other":
		must(Seccomp(Downloader))
		var l unix.Rlimit
		report(unix.Prlimit(victim(), unix.RLIMIT_NOFILE, nil, &l))
	case "downloader-seccomp-prlimit-own":
		must(Seccomp(Downloader))
		var l unix.Rlimit
		report(unix.Prlimit(0, unix.RLIMIT_NOFILE, nil, &l))
	case "receiver-seccomp-mptcp":
		must(Seccomp(Receiver))
		_, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 262)
		report(err)
	case "receiver-seccomp-clone-newuser", "worker-seccomp-clone-newuser", "downloader-seccomp-clone-newuser":
		// A child in a new user namespace, by the raw clone call that the
		// allowlists permit for the runtime's threads.
		must(Seccomp(Domain(strings.SplitN(c, "-", 2)[0])))
		report(cloneChild(unix.CLONE_NEWUSER))
	case "receiver-seccomp-clone-plain", "worker-seccomp-clone-plain", "downloader-seccomp-clone-plain":
		// Control: a plain fork stays allowed. (The threads case below
		// is the one that matters: the Go runtime's own clone flags.)
		must(Seccomp(Domain(strings.SplitN(c, "-", 2)[0])))
		report(cloneChild(0))
	case "receiver-seccomp-threads", "worker-seccomp-threads", "downloader-seccomp-threads":
		// Control: the Go runtime still starts threads (clone with its
		// own flags). Each goroutine holds a thread of its own; a refused
		// clone is a fatal error of the runtime, and the case fails.
		must(Seccomp(Domain(strings.SplitN(c, "-", 2)[0])))
		var wg sync.WaitGroup
		for i := 0; i < 8; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				runtime.LockOSThread()
				time.Sleep(20 * time.Millisecond)
			}()
		}
		wg.Wait()
		report(nil)
	case "receiver-seccomp-vsock":
		must(Seccomp(Receiver))
		_, err := unix.Socket(unix.AF_VSOCK, unix.SOCK_STREAM, 0)
		report(err)
	// Worker.
	case "worker-landlock-exec":
		must(Landlock(workerRules()))
		report(syscall.Exec("/bin/true", []string{"true"}, nil))
	case "worker-landlock-connect":
		must(Landlock(workerRules()))
		report(connect(port("ALLOWED")))
	case "worker-landlock-read-secret":
		must(Landlock(workerRules()))
		report(readFile(env("SECRET")))
	case "worker-seccomp-socket":
		must(Seccomp(Worker))
		_, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
		report(err)
	case "worker-seccomp-execve":
		must(Seccomp(Worker))
		report(syscall.Exec("/bin/true", []string{"true"}, nil))
	// Downloader, Landlock.
	case "downloader-landlock-write-job":
		must(Landlock(downloaderRules()))
		report(writeFile(filepath.Join(env("JOB"), "video.mp4")))
	case "downloader-landlock-exec-from-job":
		must(Landlock(downloaderRules()))
		// A downloaded "video" that is really a program, run from the job
		// directory (the file is created before the rules apply).
		report(syscall.Exec(filepath.Join(env("JOB"), "payload"), []string{"payload"}, nil))
	case "downloader-landlock-symlink":
		must(Landlock(downloaderRules()))
		report(os.Symlink("/etc/passwd", filepath.Join(env("JOB"), "link")))
	case "downloader-landlock-fifo":
		must(Landlock(downloaderRules()))
		report(unix.Mkfifo(filepath.Join(env("JOB"), "fifo"), 0o600))
	case "downloader-landlock-write-outside":
		must(Landlock(downloaderRules()))
		report(writeFile(filepath.Join(filepath.Dir(env("JOB")), "escaped")))
	case "downloader-landlock-read-secret":
		must(Landlock(downloaderRules()))
		report(readFile(env("SECRET")))
	case "downloader-landlock-connect-allowed":
		must(Landlock(downloaderRules()))
		report(connect(port("ALLOWED")))
	case "downloader-landlock-connect-other":
		must(Landlock(downloaderRules()))
		report(connect(port("OTHERPORT")))
	case "downloader-landlock-bind":
		must(Landlock(downloaderRules()))
		report(bind(port("FREE")))
	case "downloader-landlock-signal-parent":
		must(Landlock(downloaderRules()))
		report(unix.Kill(os.Getppid(), 0))
	case "downloader-landlock-memfd-exec":
		// A memfd lives on no path: Landlock's execute right does not
		// apply to it. (Seccomp kills memfd_create: -seccomp-memfd-exec.)
		must(Landlock(downloaderRules()))
		report(memfdExec())
	case "downloader-landlock-ldso-exec":
		// The dynamic loader (an allowed program) maps a file of the job
		// directory and runs it: the loader reads the file, which is no
		// exec, so Landlock's execute right does not apply to it.
		must(Landlock(downloaderRules()))
		report(syscall.Exec("/lib64/ld-linux-x86-64.so.2",
			[]string{"ld.so", filepath.Join(env("JOB"), "elf-payload"), "executed"}, nil))
	case "downloader-landlock-exec-python":
		must(Landlock(downloaderRules()))
		out, err := exec.Command("/usr/bin/python3", "-c", "print('hi')").Output()
		if err == nil && strings.TrimSpace(string(out)) != "hi" {
			err = fmt.Errorf("python printed %q", out)
		}
		report(err)
	// Downloader, seccomp: each of these kills the process (SIGSYS).
	case "downloader-seccomp-ptrace":
		must(Seccomp(Downloader))
		report(unix.PtraceAttach(victim()))
	case "downloader-seccomp-unshare":
		must(Seccomp(Downloader))
		report(unix.Unshare(unix.CLONE_NEWUSER))
	case "downloader-seccomp-mptcp":
		must(Seccomp(Downloader))
		_, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 262)
		report(err)
	case "downloader-seccomp-mptcp-high-bits":
		must(Seccomp(Downloader))
		_, _, e := unix.RawSyscall(unix.SYS_SOCKET, unix.AF_INET, unix.SOCK_STREAM, 1<<32|262)
		report(errnoOrNil(e))
	case "downloader-seccomp-unix-socket":
		must(Seccomp(Downloader))
		_, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM, 0)
		report(err)
	case "downloader-seccomp-unix-socket-high-bits":
		must(Seccomp(Downloader))
		_, _, e := unix.RawSyscall(unix.SYS_SOCKET, 1<<32|unix.AF_UNIX, unix.SOCK_STREAM, 0)
		report(errnoOrNil(e))
	case "downloader-seccomp-socketpair":
		must(Seccomp(Downloader))
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0)
		if err == nil {
			unix.Close(fds[0])
			unix.Close(fds[1])
		}
		report(err)
	case "courier-seccomp-accept":
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		must(err)
		f, err := ln.(*net.TCPListener).File()
		must(err)
		must(Seccomp(Courier))
		_, _, e := unix.Syscall6(unix.SYS_ACCEPT4, f.Fd(), 0, 0, unix.SOCK_NONBLOCK, 0, 0)
		report(errnoOrNil(e))
	case "courier-seccomp-bind":
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
		must(err)
		must(Seccomp(Courier))
		report(unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}))
	case "courier-seccomp-execve":
		must(Seccomp(Courier))
		report(syscall.Exec("/bin/true", []string{"true"}, nil))
	case "courier-seccomp-connect":
		must(Seccomp(Courier))
		report(connect(port("ALLOWED")))
	case "receiver-socket-seccomp-accept":
		// A listening socket made before the filter (as HTTP mode's is):
		// in Socket Mode, accept4 is not on the allowlist.
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		must(err)
		f, err := ln.(*net.TCPListener).File()
		must(err)
		must(Seccomp(ReceiverSocket))
		_, _, e := unix.Syscall6(unix.SYS_ACCEPT4, f.Fd(), 0, 0, unix.SOCK_NONBLOCK, 0, 0)
		report(errnoOrNil(e))
	case "receiver-seccomp-bind", "downloader-seccomp-listen":
		d := Receiver
		if strings.HasPrefix(c, "downloader") {
			d = Downloader
		}
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
		must(err)
		must(Seccomp(d))
		err = unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}})
		if err == nil {
			err = unix.Listen(fd, 1)
		}
		report(err)
	case "receiver-seccomp-unix-socket":
		must(Seccomp(Receiver))
		_, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM, 0)
		report(err)
	case "downloader-seccomp-int80":
		must(Seccomp(Downloader))
		int80Getpid()
		report(nil)
	case "downloader-seccomp-keyctl":
		must(Seccomp(Downloader))
		_, err := unix.KeyctlInt(unix.KEYCTL_GET_KEYRING_ID, unix.KEY_SPEC_SESSION_KEYRING, 0, 0, 0)
		report(err)
	case "downloader-seccomp-bpf":
		must(Seccomp(Downloader))
		_, _, e := unix.Syscall(unix.SYS_BPF, 0, 0, 0)
		report(errnoOrNil(e))
	case "downloader-seccomp-io-uring":
		must(Seccomp(Downloader))
		_, _, e := unix.Syscall(unix.SYS_IO_URING_SETUP, 1, 0, 0)
		report(errnoOrNil(e))
	case "downloader-seccomp-userfaultfd":
		must(Seccomp(Downloader))
		_, _, e := unix.Syscall(unix.SYS_USERFAULTFD, 0, 0, 0)
		report(errnoOrNil(e))
	case "downloader-seccomp-perf":
		must(Seccomp(Downloader))
		_, _, e := unix.Syscall6(unix.SYS_PERF_EVENT_OPEN, 0, 0, ^uintptr(0), ^uintptr(0), 0, 0)
		report(errnoOrNil(e))
	case "downloader-seccomp-setsid":
		must(Seccomp(Downloader))
		_, err := unix.Setsid()
		report(err)
	case "downloader-seccomp-clone3":
		must(Seccomp(Downloader))
		_, _, e := unix.Syscall(unix.SYS_CLONE3, 0, 0, 0)
		report(errnoOrNil(e))
	case "downloader-seccomp-process-vm":
		// A download child: the daemon's filter and the child jail's.
		must(Seccomp(Downloader))
		pgid, _ := unix.Getpgid(os.Getppid())
		must(ChildJail(JailParams{ServerPID: os.Getppid(), ServerPGID: pgid}))
		_, _, e := unix.Syscall6(unix.SYS_PROCESS_VM_READV, uintptr(victim()), 0, 0, 0, 0, 0)
		report(errnoOrNil(e))
	case "downloader-seccomp-process-vm-server":
		// The launcher server reads its children's connect addresses.
		must(Seccomp(Downloader))
		_, _, e := unix.Syscall6(unix.SYS_PROCESS_VM_READV, uintptr(victim()), 0, 0, 0, 0, 0)
		report(errnoOrNil(e))
	case "downloader-seccomp-mount":
		must(Seccomp(Downloader))
		report(unix.Mount("none", "/tmp", "tmpfs", 0, ""))
	case "downloader-seccomp-memfd-exec":
		must(Seccomp(Downloader))
		report(memfdExec())
	case "downloader-seccomp-memfd-noexec-seal":
		must(Seccomp(Downloader))
		_, err := unix.MemfdCreate("x", unix.MFD_NOEXEC_SEAL)
		report(err)
	case "downloader-seccomp-tcp-socket", "downloader-seccomp-tcp6-socket":
		// Control: the families downloads use pass the prefix.
		must(Seccomp(Downloader))
		family := unix.AF_INET
		if c == "downloader-seccomp-tcp6-socket" {
			family = unix.AF_INET6
		}
		fd, err := unix.Socket(family, unix.SOCK_STREAM, 0)
		if err == nil {
			unix.Close(fd)
		}
		report(err)
	case "downloader-seccomp-vsock":
		must(Seccomp(Downloader))
		_, err := unix.Socket(unix.AF_VSOCK, unix.SOCK_STREAM, 0)
		report(err)
	case "downloader-seccomp-vsock-high-bits":
		must(Seccomp(Downloader))
		_, _, e := unix.RawSyscall(unix.SYS_SOCKET, 1<<32|unix.AF_VSOCK, unix.SOCK_STREAM, 0)
		report(errnoOrNil(e))
	case "downloader-seccomp-alg":
		must(Seccomp(Downloader))
		_, err := unix.Socket(unix.AF_ALG, unix.SOCK_SEQPACKET, 0)
		report(err)
	case "downloader-seccomp-netlink":
		must(Seccomp(Downloader))
		_, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW, unix.NETLINK_ROUTE)
		report(err)
	case "downloader-seccomp-socketpair-inet":
		must(Seccomp(Downloader))
		_, err := unix.Socketpair(unix.AF_INET, unix.SOCK_STREAM, 0)
		report(err)
	case "downloader-seccomp-python-resolve":
		// glibc's getaddrinfo opens a netlink socket for AI_ADDRCONFIG (and
		// to sort a host's several addresses, as YouTube's have): refused,
		// it must carry on, not die.
		must(Seccomp(Downloader))
		out, err := exec.Command("/usr/bin/python3", "-c",
			"import socket; print(socket.getaddrinfo('localhost', 443, 0, socket.SOCK_STREAM, 0, socket.AI_ADDRCONFIG)[0][4][0])").Output()
		if err == nil && strings.TrimSpace(string(out)) != "127.0.0.1" {
			err = fmt.Errorf("python resolved localhost to %q", out)
		}
		report(err)
	case "downloader-seccomp-getpid":
		must(Seccomp(Downloader))
		_ = os.Getpid()
		report(nil)
	// Unix users.
	case "dac-read-other-user":
		must(BecomeUser(&Identity{UID: 61002, GID: 61002}))
		report(readFile(env("SECRET")))
	case "nodump-peer-environ", "dump-peer-environ":
		// A process of the same user reads a peer's /proc environ: the
		// downloader against the launcher server, or against the worker.
		self, _ := os.Executable()
		peer := exec.Command(self, "-test.run=^$")
		peer.Env = []string{caseEnv + "=peer-" + c}
		out, _ := peer.StdoutPipe()
		must(peer.Start())
		defer func() { peer.Process.Kill(); peer.Wait() }()
		ready := make([]byte, 6)
		if _, err := out.Read(ready); err != nil || string(ready) != "ready\n" {
			must(fmt.Errorf("peer not ready: %q %v", ready, err))
		}
		must(BecomeUser(&Identity{UID: 61002, GID: 61002}))
		report(readFile(fmt.Sprintf("/proc/%d/environ", peer.Process.Pid)))
	case "peer-nodump-peer-environ", "peer-dump-peer-environ":
		must(BecomeUser(&Identity{UID: 61002, GID: 61002}))
		// Leaving root already clears the flag; a daemon started by
		// systemd as its user, or the launcher after its exec, has it set.
		must(unix.Prctl(unix.PR_SET_DUMPABLE, 1, 0, 0, 0))
		if c == "peer-nodump-peer-environ" {
			must(NoDump())
		}
		fmt.Println("ready")
		select {}
	case "threads-after-become-user":
		// Threads that exist before the switch must switch too.
		done := make(chan struct{})
		for i := 0; i < 8; i++ {
			go func() { <-done }()
		}
		must(BecomeUser(&Identity{UID: 61002, GID: 61002, Groups: []int{61010, 61011}}))
		close(done)
		report(CheckThreads(&Identity{UID: 61002, GID: 61002, Groups: []int{61010, 61011}}))
	default:
		fmt.Println("unknown case", c)
		os.Exit(4)
	}
}

func errnoOrNil(e syscall.Errno) error {
	if e == 0 {
		return nil
	}
	return e
}

// fixture is the paths and ports the cases use.
type fixture struct {
	env                  []string
	allowed, other, free int
	secret, job          string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	root := t.TempDir()
	// Let the numeric users traverse the test's own directories (only
	// adding r-x: never loosen anything else).
	for _, d := range []string{root, filepath.Dir(root)} {
		var st unix.Stat_t
		if err := unix.Stat(d, &st); err != nil {
			t.Fatal(err)
		}
		unix.Chmod(d, st.Mode&0o7777|0o055)
	}
	f := &fixture{secret: filepath.Join(root, "signing_secret"), job: filepath.Join(root, "work", "job1")}
	for _, d := range []string{"spool", "work/job1", "other", "drop"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(root, "config.toml"), []byte("x"), 0o644)
	os.WriteFile(filepath.Join(root, "drop", "theirs.job"), []byte("x"), 0o644)
	os.WriteFile(filepath.Join(f.job, "payload"), []byte("#!/bin/sh\necho pwned\n"), 0o755)
	// A native program dropped as a "download" (not even executable).
	if echo, err := os.ReadFile("/bin/echo"); err != nil {
		t.Fatal(err)
	} else {
		os.WriteFile(filepath.Join(f.job, "elf-payload"), echo, 0o644)
	}
	os.WriteFile(f.secret, []byte("s3cret"), 0o600)
	os.WriteFile(filepath.Join(root, "other", "file"), []byte("x"), 0o644)
	os.WriteFile(filepath.Join(root, "reply.key"), make([]byte, 32), 0o640)
	// Two listeners: one allowed, one not.
	for _, p := range []*int{&f.allowed, &f.other} {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
		*p = ln.Addr().(*net.TCPAddr).Port
	}
	ln, _ := net.Listen("tcp4", "127.0.0.1:0")
	f.free = ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	v := exec.Command("/bin/sleep", "300")
	if err := v.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Process.Kill(); v.Wait() })
	f.env = []string{
		"YTKEEP_CONFIG=" + filepath.Join(root, "config.toml"), "YTKEEP_SECRET=" + f.secret, "YTKEEP_KEY=" + filepath.Join(root, "reply.key"),
		"YTKEEP_SPOOL=" + filepath.Join(root, "spool"), "YTKEEP_JOB=" + f.job, "YTKEEP_DROP=" + filepath.Join(root, "drop"),
		"YTKEEP_OTHER=" + filepath.Join(root, "other", "file"),
		"YTKEEP_ALLOWED=" + strconv.Itoa(f.allowed), "YTKEEP_OTHERPORT=" + strconv.Itoa(f.other),
		"YTKEEP_FREE=" + strconv.Itoa(f.free), "YTKEEP_LISTEN=" + strconv.Itoa(f.free+1),
		"YTKEEP_VICTIM=" + strconv.Itoa(v.Process.Pid),
	}
	return f
}

// run executes one case and returns its report line, or "SIGSYS" etc. if
// it was killed.
func (f *fixture) run(t *testing.T, c string) string {
	t.Helper()
	self, _ := os.Executable()
	cmd := exec.Command(self, "-test.run=^$")
	cmd.Env = append([]string{caseEnv + "=" + c, "PATH=/usr/bin:/bin"}, f.env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return unix.SignalName(ws.Signal())
		}
		t.Fatalf("case %s exited %d: %s", c, ee.ExitCode(), out.String())
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(out.String())
}

func requireLandlock(t *testing.T) {
	t.Helper()
	if LandlockABI() < MinLandlockABI {
		if os.Getenv("CI") != "" {
			t.Fatalf("Landlock ABI %d on CI: every layer test must run", LandlockABI())
		}
		t.Skipf("SKIPPED: kernel Landlock ABI %d < %d; these tests prove nothing here", LandlockABI(), MinLandlockABI)
	}
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("CI must run the Unix user tests as root")
		}
		t.Skip("SKIPPED: needs root to switch to numeric uids")
	}
}

// Each case with the outcome that proves the layer holds. "ok" cases are
// positive controls: without them a rule set that denies everything would
// pass.
var landlockCases = []struct{ c, want string }{
	{"receiver-landlock-read-secret", "ok"},
	{"receiver-landlock-read-outside", "EACCES"},
	{"receiver-landlock-read-shadow", "EACCES"},
	{"receiver-landlock-write-outside", "EACCES"},
	{"receiver-landlock-drop-rename-in", "ok"},
	{"receiver-landlock-drop-write", "EACCES"},
	{"receiver-landlock-drop-read", "EACCES"},
	{"receiver-landlock-drop-list", "EACCES"},
	{"receiver-landlock-drop-remove", "EACCES"},
	{"receiver-landlock-connect-allowed", "ok"},
	{"receiver-landlock-connect-other", "EACCES"},
	{"receiver-landlock-bind-other", "EACCES"},
	{"receiver-landlock-exec", "EACCES"},
	{"receiver-socket-landlock-bind", "EACCES"},
	{"receiver-socket-landlock-bind-ephemeral", "EACCES"},
	{"courier-landlock-read-key", "ok"},
	{"courier-landlock-read-secret", "EACCES"},
	{"courier-landlock-write-spool", "ok"},
	{"courier-landlock-drop-job", "EACCES"},
	{"courier-landlock-connect-allowed", "ok"},
	{"courier-landlock-connect-other", "EACCES"},
	{"courier-landlock-bind", "EACCES"},
	{"courier-landlock-exec", "EACCES"},
	{"courier-landlock-read-downloads", "ok"},
	{"courier-landlock-write-downloads", "EACCES"},
	{"courier-landlock-read-downloads-off", "EACCES"},
	{"worker-landlock-exec", "EACCES"},
	{"worker-landlock-connect", "EACCES"},
	{"worker-landlock-read-secret", "EACCES"},
	{"downloader-landlock-write-job", "ok"},
	{"downloader-landlock-write-outside", "EACCES"},
	{"downloader-landlock-exec-from-job", "EACCES"},
	{"downloader-landlock-symlink", "EACCES"},
	{"downloader-landlock-fifo", "EACCES"},
	{"downloader-landlock-read-secret", "EACCES"},
	{"downloader-landlock-connect-allowed", "ok"},
	{"downloader-landlock-connect-other", "EACCES"},
	{"downloader-landlock-bind", "EACCES"},
	{"downloader-landlock-signal-parent", "EPERM"},
	{"downloader-landlock-exec-python", "ok"},
	// What Landlock's execute right does not cover, and the other layers
	// must (docs/confinement.md): these two run the payload. If one stops
	// doing so, a newer kernel closed the gap; update the docs.
	{"downloader-landlock-memfd-exec", "executed"},
	{"downloader-landlock-ldso-exec", "executed"},
}

var seccompCases = []struct{ c, want string }{
	{"receiver-seccomp-execve", "SIGSYS"},
	{"receiver-seccomp-ptrace", "SIGSYS"},
	{"receiver-seccomp-mptcp", "SIGSYS"},
	{"receiver-socket-seccomp-accept", "EPERM"},
	{"courier-seccomp-accept", "EPERM"},
	{"courier-seccomp-bind", "EPERM"},
	{"courier-seccomp-execve", "SIGSYS"},
	{"courier-seccomp-connect", "ok"},
	{"receiver-seccomp-prlimit-other", "EPERM"},
	{"downloader-seccomp-prlimit-other", "EPERM"},
	{"downloader-seccomp-prlimit-own", "ok"},
	{"worker-seccomp-socket", "EACCES"},
	{"worker-seccomp-execve", "SIGSYS"},
	{"downloader-seccomp-getpid", "ok"},
	{"downloader-seccomp-ptrace", "SIGSYS"},
	{"downloader-seccomp-unshare", "SIGSYS"},
	{"downloader-seccomp-mptcp", "SIGSYS"},
	{"downloader-seccomp-mptcp-high-bits", "SIGSYS"},
	{"downloader-seccomp-int80", "SIGSYS"},
	{"downloader-seccomp-unix-socket", "EACCES"},
	{"downloader-seccomp-unix-socket-high-bits", "EACCES"},
	{"downloader-seccomp-socketpair", "ok"},
	{"receiver-seccomp-unix-socket", "EACCES"},
	{"receiver-seccomp-bind", "EPERM"},
	{"downloader-seccomp-listen", "EPERM"},
	{"downloader-seccomp-keyctl", "SIGSYS"},
	{"downloader-seccomp-bpf", "SIGSYS"},
	{"downloader-seccomp-io-uring", "SIGSYS"},
	{"downloader-seccomp-userfaultfd", "SIGSYS"},
	{"downloader-seccomp-perf", "SIGSYS"},
	{"downloader-seccomp-setsid", "SIGSYS"},
	{"downloader-seccomp-clone3", "ENOSYS"},
	{"downloader-seccomp-process-vm", "SIGSYS"},
	{"downloader-seccomp-process-vm-server", "ok"},
	{"downloader-seccomp-mount", "SIGSYS"},
	// C6: executing from a memfd escapes Landlock (see the landlock
	// cases); memfd_create kills, with or without MFD_NOEXEC_SEAL.
	{"downloader-seccomp-memfd-exec", "SIGSYS"},
	{"downloader-seccomp-memfd-noexec-seal", "SIGSYS"},
	// C8: socket families beyond what the domains use.
	{"downloader-seccomp-tcp-socket", "ok"},
	{"downloader-seccomp-tcp6-socket", "ok"},
	{"downloader-seccomp-vsock", "SIGSYS"},
	{"downloader-seccomp-vsock-high-bits", "SIGSYS"},
	{"downloader-seccomp-alg", "SIGSYS"},
	{"downloader-seccomp-netlink", "EAFNOSUPPORT"},
	{"downloader-seccomp-socketpair-inet", "SIGSYS"},
	{"downloader-seccomp-python-resolve", "ok"},
	{"receiver-seccomp-vsock", "SIGSYS"},
	// C9: no domain may make a namespace through clone; plain forks stay.
	{"receiver-seccomp-clone-newuser", "SIGSYS"},
	{"worker-seccomp-clone-newuser", "SIGSYS"},
	{"downloader-seccomp-clone-newuser", "SIGSYS"},
	{"receiver-seccomp-clone-plain", "ok"},
	{"worker-seccomp-clone-plain", "ok"},
	{"downloader-seccomp-clone-plain", "ok"},
	{"receiver-seccomp-threads", "ok"},
	{"worker-seccomp-threads", "ok"},
	{"downloader-seccomp-threads", "ok"},
	// C8: System V IPC, every call.
	{"downloader-seccomp-sysv-shmget", "SIGSYS"},
	{"downloader-seccomp-sysv-shmat", "SIGSYS"},
	{"downloader-seccomp-sysv-shmdt", "SIGSYS"},
	{"downloader-seccomp-sysv-shmctl", "SIGSYS"},
	{"downloader-seccomp-sysv-msgget", "SIGSYS"},
	{"downloader-seccomp-sysv-msgsnd", "SIGSYS"},
	{"downloader-seccomp-sysv-msgrcv", "SIGSYS"},
	{"downloader-seccomp-sysv-msgctl", "SIGSYS"},
	{"downloader-seccomp-sysv-semget", "SIGSYS"},
	{"downloader-seccomp-sysv-semop", "SIGSYS"},
	{"downloader-seccomp-sysv-semtimedop", "SIGSYS"},
	{"downloader-seccomp-sysv-semctl", "SIGSYS"},
}

func TestLandlockLayer(t *testing.T) {
	requireLandlock(t)
	f := newFixture(t)
	for _, tt := range landlockCases {
		t.Run(tt.c, func(t *testing.T) {
			if got := f.run(t, tt.c); got != tt.want {
				t.Fatalf("got %s, want %s", got, tt.want)
			}
		})
	}
}

func TestSeccompLayer(t *testing.T) {
	f := newFixture(t)
	for _, tt := range seccompCases {
		t.Run(tt.c, func(t *testing.T) {
			if got := f.run(t, tt.c); got != tt.want {
				t.Fatalf("got %s, want %s", got, tt.want)
			}
		})
	}
}

func TestUnixUsersLayer(t *testing.T) {
	requireRoot(t)
	f := newFixture(t)
	if err := os.Chown(f.secret, 61001, 61001); err != nil {
		t.Fatal(err)
	}
	if got := f.run(t, "dac-read-other-user"); got != "EACCES" {
		t.Fatalf("another uid read the receiver's secret: %s", got)
	}
	if got := f.run(t, "threads-after-become-user"); got != "ok" {
		t.Fatalf("threads after the switch: %s", got)
	}
}

// TestNoDumpLayer: a non-dumpable process keeps even its own user out of
// its /proc files (the downloader runs as the worker's user); the
// dumpable control shows the read works otherwise.
func TestNoDumpLayer(t *testing.T) {
	requireRoot(t)
	f := newFixture(t)
	if got := f.run(t, "dump-peer-environ"); got != "ok" {
		t.Fatalf("control: a same-user peer's environ: %s, want ok", got)
	}
	if got := f.run(t, "nodump-peer-environ"); got != "EACCES" {
		t.Fatalf("a non-dumpable peer's environ: %s, want EACCES", got)
	}
}

func TestResolveIdentity(t *testing.T) {
	id, err := ResolveIdentity("61002", "61002", []string{"61010"})
	if err != nil || id.UID != 61002 || id.GID != 61002 || len(id.Groups) != 1 {
		t.Fatalf("%+v %v", id, err)
	}
	for _, bad := range [][3]string{{"0", "1", ""}, {"61002", "0", ""}, {"root", "", ""}, {"61002", "", ""}} {
		if _, err := ResolveIdentity(bad[0], bad[1], nil); err == nil {
			t.Errorf("ResolveIdentity(%q, %q) accepted", bad[0], bad[1])
		}
	}
}
