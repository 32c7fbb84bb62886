package confine

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestChildJailFilter runs the child jail's filter in x/net/bpf's
// interpreter: each refusal, and the calls next to it that must pass
// (modes without an execute bit, opens that create nothing, signals to
// other processes), with junk in the upper half of int arguments.
func TestChildJailFilter(t *testing.T) {
	const server, group = 4321, 4300
	raw, err := childJailProgram(JailParams{ServerPID: server, ServerPGID: group})
	vm := vmOf(t, raw, err)
	perm := refuse(unix.EPERM)
	neg := func(v int64) uint64 { return uint64(v) }
	runCases(t, vm, []filterCase{
		{"mknodat fifo", sys(unix.SYS_MKNODAT, 3, 0, unix.S_IFIFO|0o600), perm},
		{"mknod", sys(unix.SYS_MKNOD, 0, unix.S_IFREG|0o600), perm},
		{"symlinkat", sys(unix.SYS_SYMLINKAT, 0, 3, 0), perm},
		{"linkat", sys(unix.SYS_LINKAT, 3, 0, 3, 0, 0), perm},
		{"chmod +x", sys(unix.SYS_CHMOD, 0, 0o755), perm},
		{"chmod 0644", sys(unix.SYS_CHMOD, 0, 0o644), allow},
		{"fchmod o+x", sys(unix.SYS_FCHMOD, 3, 0o601), perm},
		{"fchmod 0600 junk", sys(unix.SYS_FCHMOD, 3, junk|0o600), allow},
		{"fchmodat g+x", sys(unix.SYS_FCHMODAT, 3, 0, 0o650), perm},
		{"fchmodat2 u+x", sys(sysFchmodat2, 3, 0, 0o700, 0), perm},
		{"creat 0700", sys(unix.SYS_CREAT, 0, 0o700), perm},
		{"creat 0600", sys(unix.SYS_CREAT, 0, 0o600), allow},
		{"openat create 0755", sys(unix.SYS_OPENAT, 3, 0, unix.O_CREAT|unix.O_WRONLY, 0o755), perm},
		{"openat create 0666", sys(unix.SYS_OPENAT, 3, 0, unix.O_CREAT|unix.O_WRONLY, 0o666), allow},
		{"openat read, junk mode", sys(unix.SYS_OPENAT, 3, 0, unix.O_RDONLY, 0o777), allow},
		{"openat tmpfile 0700", sys(unix.SYS_OPENAT, 3, 0, unix.O_TMPFILE|unix.O_RDWR, 0o700), perm},
		{"open create 0711", sys(unix.SYS_OPEN, 0, unix.O_CREAT|unix.O_RDWR, 0o711), perm},
		{"open read", sys(unix.SYS_OPEN, 0, unix.O_RDONLY, 0o777), allow},
		{"openat2", sys(unix.SYS_OPENAT2, 3, 0, 0, 24), refuse(unix.ENOSYS)},
		{"setxattr", sys(unix.SYS_SETXATTR), refuse(unix.EOPNOTSUPP)},
		{"fsetxattr", sys(unix.SYS_FSETXATTR, 3), refuse(unix.EOPNOTSUPP)},
		{"kill server", sys(unix.SYS_KILL, server, 9), perm},
		{"kill server junk", sys(unix.SYS_KILL, junk|server, 9), perm},
		{"kill server's group", sys(unix.SYS_KILL, neg(-group), 9), perm},
		{"kill everyone", sys(unix.SYS_KILL, neg(-1), 9), perm},
		{"kill another", sys(unix.SYS_KILL, server+1, 9), allow},
		{"kill own group", sys(unix.SYS_KILL, 0, 9), allow},
		{"tgkill server", sys(unix.SYS_TGKILL, server, server+3, 9), perm},
		{"tgkill self", sys(unix.SYS_TGKILL, 77, 78, 6), allow},
		{"tkill", sys(unix.SYS_TKILL, 77, 6), perm},
		{"rt_sigqueueinfo server", sys(unix.SYS_RT_SIGQUEUEINFO, server, 10, 0), perm},
		{"rt_tgsigqueueinfo server", sys(unix.SYS_RT_TGSIGQUEUEINFO, server, server, 10, 0), perm},
		{"pidfd_open server", sys(unix.SYS_PIDFD_OPEN, server, 0), perm},
		{"pidfd_open child", sys(unix.SYS_PIDFD_OPEN, 99, 0), allow},
		{"pidfd_send_signal", sys(unix.SYS_PIDFD_SEND_SIGNAL, 3, 9, 0, 0), perm},
		{"F_SETOWN server", sys(unix.SYS_FCNTL, 3, unix.F_SETOWN, server), perm},
		{"F_SETOWN server's group", sys(unix.SYS_FCNTL, 3, unix.F_SETOWN, neg(-group)), perm},
		{"F_SETOWN a thread", sys(unix.SYS_FCNTL, 3, unix.F_SETOWN, server+2), perm},
		{"F_SETOWN none", sys(unix.SYS_FCNTL, 3, unix.F_SETOWN, junk), allow},
		{"F_SETSIG", sys(unix.SYS_FCNTL, 3, unix.F_SETSIG, 9), perm},
		{"prlimit64 self", sys(unix.SYS_PRLIMIT64, 0, unix.RLIMIT_NOFILE, 0, 1), allow},
		{"prlimit64 server", sys(unix.SYS_PRLIMIT64, server, unix.RLIMIT_CPU, 1, 0), perm},
		{"prlimit64 another", sys(unix.SYS_PRLIMIT64, 99, unix.RLIMIT_CPU, 1, 0), perm},
		{"setpriority self", sys(unix.SYS_SETPRIORITY, unix.PRIO_PROCESS, 0, 10), allow},
		{"setpriority server", sys(unix.SYS_SETPRIORITY, unix.PRIO_PROCESS, server, 19), perm},
		{"setpriority user", sys(unix.SYS_SETPRIORITY, unix.PRIO_USER, 0, 19), perm},
		{"ioprio_set self", sys(unix.SYS_IOPRIO_SET, ioprioWhoProcess, 0, 0), allow},
		{"ioprio_set user", sys(unix.SYS_IOPRIO_SET, 3, 0, 0), perm},
		{"sched_setaffinity self", sys(unix.SYS_SCHED_SETAFFINITY, 0, 8, 0), allow},
		{"sched_setaffinity server", sys(unix.SYS_SCHED_SETAFFINITY, server, 8, 0), perm},
		{"sched_setattr another", sys(unix.SYS_SCHED_SETATTR, 99, 0, 0), perm},
		{"bind", sys(unix.SYS_BIND, 3, 0, 110), perm},
		{"F_SETOWN_EX", sys(unix.SYS_FCNTL, 3, unix.F_SETOWN_EX, 0), perm},
		{"F_SETFL", sys(unix.SYS_FCNTL, 3, unix.F_SETFL, server), allow},
		{"FIOSETOWN", sys(unix.SYS_IOCTL, 3, fioSetown, 0), perm},
		{"SIOCSPGRP", sys(unix.SYS_IOCTL, 3, unix.SIOCSPGRP, 0), perm},
		{"FIONBIO", sys(unix.SYS_IOCTL, 3, 0x5421 /* FIONBIO */, 0), allow},
		{"process_vm_readv", sys(unix.SYS_PROCESS_VM_READV, 99), kill},
		{"pidfd_getfd (the daemon's filter kills it)", sys(unix.SYS_PIDFD_GETFD, 3, 4, 0), allow},
		{"mkdirat 0755", sys(unix.SYS_MKDIRAT, 3, 0, 0o755), allow},
		{"read", sys(unix.SYS_READ, 3, 0, 10), allow},
		{"i386 chmod", call{nr: 15, arch: 0x40000003}, kill},
	})
	if _, err := childJailProgram(JailParams{ServerPID: 1, ServerPGID: 1}); err == nil {
		t.Error("a jail protecting init: want an error")
	}
}

// TestChildJail: the kernel applies the filter. A process with the jail
// (and nothing else: no Landlock) cannot link, make a FIFO, give a file
// an execute bit, run a file it wrote, or signal its parent; without it
// (the control, in the same run) each of these works, so the test shows
// the filter doing it.
func TestChildJail(t *testing.T) {
	if mode := os.Getenv("YTKEEP_JAIL_CHILD"); mode != "" {
		jailChild(t, mode == "filter")
		return
	}
	for _, mode := range []string{"control", "filter"} {
		self, _ := os.Executable()
		cmd := exec.Command(self, "-test.run=^TestChildJail$", "-test.v")
		cmd.Env = append(os.Environ(), "YTKEEP_JAIL_CHILD="+mode)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", mode, err, out)
		}
		if !strings.Contains(string(out), "checked "+mode) {
			t.Fatalf("%s: the child did not run its checks:\n%s", mode, out)
		}
	}
}

func jailChild(t *testing.T, filter bool) {
	dir := t.TempDir()
	prog := filepath.Join(dir, "prog")
	if err := os.WriteFile(prog, []byte("#!/bin/sh\nexit 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if filter {
		ppid := os.Getppid()
		pgid, err := unix.Getpgid(ppid)
		if err != nil {
			t.Fatal(err)
		}
		if err := ChildJail(JailParams{ServerPID: ppid, ServerPGID: pgid}); err != nil {
			t.Fatal(err)
		}
	}
	checks := []struct {
		name string
		do   func() error
	}{
		{"symlink", func() error { return os.Symlink("/etc/passwd", filepath.Join(dir, "s")) }},
		{"link", func() error { return os.Link(prog, filepath.Join(dir, "l")) }},
		{"mkfifo", func() error { return unix.Mkfifo(filepath.Join(dir, "f"), 0o600) }},
		{"chmod +x", func() error { return os.Chmod(prog, 0o755) }},
		{"create 0755", func() error {
			fd, err := unix.Open(filepath.Join(dir, "x"), unix.O_CREAT|unix.O_WRONLY|unix.O_CLOEXEC, 0o755)
			if err == nil {
				unix.Close(fd)
			}
			return err
		}},
		{"run what it wrote", func() error { return exec.Command(prog).Run() }},
		{"signal the parent", func() error { return unix.Kill(os.Getppid(), 0) }},
		{"cut the parent's limits", func() error {
			var l unix.Rlimit
			if err := unix.Prlimit(os.Getppid(), unix.RLIMIT_NOFILE, nil, &l); err != nil {
				return err
			}
			return unix.Prlimit(os.Getppid(), unix.RLIMIT_NOFILE, &l, nil) // the same values: changes nothing
		}},
		{"SIGIO to the parent", func() error {
			var p [2]int
			if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
				return err
			}
			defer unix.Close(p[0])
			defer unix.Close(p[1])
			_, err := unix.FcntlInt(uintptr(p[0]), unix.F_SETOWN, os.Getppid())
			return err
		}},
	}
	for _, c := range checks {
		err := c.do()
		switch {
		case filter && err == nil:
			t.Errorf("%s under the jail: allowed", c.name)
		case filter && c.name != "run what it wrote" && !errors.Is(err, unix.EPERM):
			t.Errorf("%s under the jail: %v, want EPERM", c.name, err)
		case !filter && err != nil:
			t.Errorf("control: %s failed (%v): the test shows nothing", c.name, err)
		}
	}
	// What a download does must still work.
	if err := os.WriteFile(filepath.Join(dir, "video.part"), []byte("x"), 0o666); err != nil {
		t.Errorf("plain create: %v", err)
	}
	if err := os.Chmod(filepath.Join(dir, "video.part"), 0o640); err != nil {
		t.Errorf("chmod 0640: %v", err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "cache", "yt-dlp"), 0o777); err != nil {
		t.Errorf("mkdir: %v", err)
	}
	if err := unix.Kill(os.Getpid(), 0); err != nil {
		t.Errorf("signal itself: %v", err)
	}
	var l unix.Rlimit
	if err := unix.Prlimit(0, unix.RLIMIT_NOFILE, nil, &l); err != nil {
		t.Errorf("read its own limit: %v", err)
	} else if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &l); err != nil {
		t.Errorf("set its own limit: %v", err)
	}
	mode := "control"
	if filter {
		mode = "filter"
	}
	t.Logf("checked %s", mode)
}

// TestBrokerFilter: socket and connect go to the supervisor, other calls
// pass, foreign architectures and the x32 ABI kill.
func TestBrokerFilter(t *testing.T) {
	raw, err := brokerProgram()
	vm := vmOf(t, raw, err)
	runCases(t, vm, []filterCase{
		{"socket", sys(unix.SYS_SOCKET, unix.AF_INET, unix.SOCK_DGRAM), unix.SECCOMP_RET_USER_NOTIF},
		{"connect", sys(unix.SYS_CONNECT, 3), unix.SECCOMP_RET_USER_NOTIF},
		{"sendto", sys(unix.SYS_SENDTO, 3, 0, 10, 0), allow},
		{"sendto fastopen", sys(unix.SYS_SENDTO, 3, 0, 10, junk|unix.MSG_FASTOPEN), unix.SECCOMP_RET_USER_NOTIF},
		{"sendmmsg fastopen", sys(unix.SYS_SENDMMSG, 3, 0, 1, unix.MSG_FASTOPEN|unix.MSG_NOSIGNAL), unix.SECCOMP_RET_USER_NOTIF},
		{"sendmsg", sys(unix.SYS_SENDMSG, 3, 0, unix.MSG_NOSIGNAL), allow},
		{"sendmsg fastopen", sys(unix.SYS_SENDMSG, 3, 0, unix.MSG_FASTOPEN), unix.SECCOMP_RET_USER_NOTIF},
		{"write", sys(unix.SYS_WRITE, 3, 0, unix.MSG_FASTOPEN), allow},
		{"kill", sys(unix.SYS_KILL, 1234, 9), unix.SECCOMP_RET_USER_NOTIF},
		{"rt_sigqueueinfo", sys(unix.SYS_RT_SIGQUEUEINFO, 1234, 10, 0), unix.SECCOMP_RET_USER_NOTIF},
		{"tgkill (the jail's)", sys(unix.SYS_TGKILL, 1234, 1235, 9), allow},
		{"read", sys(unix.SYS_READ), allow},
		{"i386 socketcall", call{nr: 102, arch: 0x40000003}, kill},
		{"x32 connect", sys(x32Bit | unix.SYS_CONNECT), kill},
	})
}
