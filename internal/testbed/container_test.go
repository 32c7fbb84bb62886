//go:build systemd

package testbed

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The real-systemd test boots a Debian 12 system (systemd 252 as PID 1)
// in a systemd-nspawn container on this host's network, so that the units
// are run by the systemd that a Debian 12 administrator has.

// rootfsSuite and rootfsPackages make the container's root file system:
// what a minimal Debian 12 server has (systemd as init) plus what the
// README tells an administrator to install.
const rootfsSuite = "bookworm"

var rootfsPackages = []string{"systemd", "systemd-sysv", "dbus", "ca-certificates", "ffmpeg",
	// Debian 12's own yt-dlp lacks --no-plugin-dirs, which ytkeep requires.
	"yt-dlp/bookworm-backports"}

// rootfsCache is where built root file systems are kept between runs,
// one per package list (building one takes about 75 s).
func rootfsCache() string {
	if d := os.Getenv("YTKEEP_ROOTFS_CACHE"); d != "" {
		return d
	}
	return "/var/cache/ytkeep-test"
}

// needContainerTools fails the test when a tool is missing: the test runs
// only when asked for (make systemd-test), so a missing tool is an error.
func needContainerTools(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("the real-systemd test boots a container and must run as root")
	}
	for _, tool := range []string{"mmdebstrap", "systemd-nspawn", "nsenter", "ffmpeg"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is missing (scripts/ensure-deps.sh --systemd installs it)", tool)
		}
	}
}

// rootfs returns a Debian root file system with rootfsPackages, built
// with mmdebstrap once and then kept, keyed by its package list. The
// directory is used read-only (as an overlay's lower layer).
func rootfs(t *testing.T) string {
	t.Helper()
	sum := sha256.Sum256([]byte(rootfsSuite + " minbase " + strings.Join(rootfsPackages, ",")))
	dir := filepath.Join(rootfsCache(), rootfsSuite+"-"+hex.EncodeToString(sum[:8]))
	if _, err := os.Stat(filepath.Join(dir, "etc", "os-release")); err == nil {
		t.Logf("root file system (cached): %s", dir)
		return dir
	}
	if err := os.MkdirAll(rootfsCache(), 0o755); err != nil {
		t.Fatal(err)
	}
	tmp := dir + ".tmp"
	os.RemoveAll(tmp)
	start := time.Now()
	// The host's own Debian mirror, with bookworm-backports added.
	sources, err := rootfsSources(t)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("mmdebstrap", "--quiet", "--variant=minbase", "--include="+strings.Join(rootfsPackages, ","), rootfsSuite, tmp, sources)
	cmd.Stdin = strings.NewReader("")
	if out, err := cmd.CombinedOutput(); err != nil {
		os.RemoveAll(tmp)
		t.Fatalf("mmdebstrap: %v\n%s", err, out)
	}
	if err := os.Rename(tmp, dir); err != nil {
		t.Fatal(err)
	}
	t.Logf("root file system built in %.0f s: %s", time.Since(start).Seconds(), dir)
	return dir
}

// rootfsSources writes a deb822 sources file for mmdebstrap: the mirror
// of the host's Debian sources, for bookworm, bookworm-updates and
// bookworm-backports.
func rootfsSources(t *testing.T) (string, error) {
	b, err := os.ReadFile("/etc/apt/sources.list.d/debian.sources")
	if err != nil {
		return "", fmt.Errorf("no Debian sources on this host to take the mirror from: %w", err)
	}
	uri := ""
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "URIs: "); ok {
			uri = strings.Fields(v)[0]
			break
		}
	}
	if uri == "" {
		return "", errors.New("no URIs line in the host's Debian sources")
	}
	p := filepath.Join(t.TempDir(), "rootfs.sources")
	data := "Types: deb\nURIs: " + uri + "\nSuites: bookworm bookworm-updates bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
	return p, os.WriteFile(p, []byte(data), 0o644)
}

// container is a booted Debian system.
type container struct {
	t       *testing.T
	root    string // the container's root, as seen from the host
	cmd     *exec.Cmd
	done    chan struct{}
	leader  int // the container's PID 1, as seen from the host
	logPath string
}

// landlockSyscalls are hidden by systemd-nspawn's own seccomp filter
// unless named.
const landlockSyscalls = "landlock_create_ruleset landlock_add_rule landlock_restrict_self"

// boot starts lower as a container whose writes go to a tmpfs overlay
// (the cached root stays pristine), with src bound read-only at /src, and
// waits for systemd to finish booting. Everything is torn down at the end
// of the test.
func boot(t *testing.T, lower, src string) *container {
	t.Helper()
	scratch := t.TempDir()
	if err := unix.Mount("tmpfs", scratch, "tmpfs", 0, "size=4g,mode=0755"); err != nil {
		t.Fatalf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(scratch, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", scratch, err)
		}
	})
	for _, d := range []string{"upper", "work", "root"} {
		if err := os.Mkdir(filepath.Join(scratch, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	root := filepath.Join(scratch, "root")
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", lower, filepath.Join(scratch, "upper"), filepath.Join(scratch, "work"))
	if err := unix.Mount("overlay", root, "overlay", 0, opts); err != nil {
		t.Fatalf("mount overlay: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(root, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", root, err)
		}
	})

	logPath := filepath.Join(t.TempDir(), "console.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	// The host has no systemd as PID 1: nothing to register with, and the
	// container runs in the caller's cgroup.
	cmd := exec.Command("systemd-nspawn", "--quiet", "--register=no", "--keep-unit",
		"--system-call-filter="+landlockSyscalls, "--machine=ytkeep-systemd-test",
		"--bind-ro="+src+":/src", "-D", root, "-b")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("systemd-nspawn: %v", err)
	}
	c := &container{t: t, root: root, cmd: cmd, done: make(chan struct{}), logPath: logPath}
	go func() { cmd.Wait(); logf.Close(); close(c.done) }()
	t.Cleanup(c.shutdown)

	deadline := time.Now().Add(60 * time.Second)
	for c.leader == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the container's init did not start:\n%s", c.console())
		}
		select {
		case <-c.done:
			t.Fatalf("systemd-nspawn exited:\n%s", c.console())
		case <-time.After(100 * time.Millisecond):
		}
		c.leader = childOf(cmd.Process.Pid, "systemd")
	}
	// Wait for the boot to end; "degraded" (some unit failed) is reported
	// but not ours to judge here.
	var state string
	for {
		// Until systemd listens, systemctl cannot connect and says so.
		state, _ = c.run("systemctl is-system-running --wait")
		if !strings.Contains(state, "Failed to connect") && !strings.Contains(state, "offline") || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("container booted: %s (systemd %s)", strings.TrimSpace(state), c.must("systemctl --version | sed -n '1s/^systemd \\([0-9]*\\).*/\\1/p'"))
	if !strings.Contains(state, "running") {
		failed, _ := c.run("systemctl --failed --no-legend")
		t.Logf("failed units in the container:\n%s", failed)
	}
	return c
}

// childOf returns the pid of a child of ppid whose command is comm, or 0.
func childOf(ppid int, comm string) int {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 || !strings.HasPrefix(s, e.Name()+" ("+comm+")") {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) > 1 && f[1] == strconv.Itoa(ppid) {
			return pid
		}
	}
	return 0
}

// run runs a shell script inside the container, as root, in all of its
// namespaces, with a clean environment. It returns the combined output.
func (c *container) run(script string) (string, error) {
	cmd := exec.Command("nsenter", "-t", strconv.Itoa(c.leader), "-a", "--",
		"/usr/bin/env", "-i", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"LANG=C.UTF-8", "SYSTEMD_PAGER=", "SYSTEMD_COLORS=0", "/bin/sh", "-c", script)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// must is run, failing the test on an error.
func (c *container) must(script string) string {
	c.t.Helper()
	out, err := c.run(script)
	if err != nil {
		c.t.Fatalf("in the container: %s: %v\n%s", script, err, out)
	}
	return strings.TrimSpace(out)
}

// path is a path inside the container, as seen from the host.
func (c *container) path(p string) string { return filepath.Join(c.root, p) }

func (c *container) console() string {
	b, _ := os.ReadFile(c.logPath)
	return string(b)
}

// shutdown powers the container off (SIGTERM to systemd-nspawn asks its
// init for an orderly shutdown) and kills it if that takes over 60 s.
func (c *container) shutdown() {
	select {
	case <-c.done:
		return
	default:
	}
	c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
		return
	case <-time.After(60 * time.Second):
	}
	c.t.Errorf("the container did not power off within 60 s; killing it")
	if c.leader != 0 {
		syscall.Kill(c.leader, syscall.SIGKILL) // ends its PID namespace
	}
	c.cmd.Process.Kill()
	<-c.done
}

// unitProperty returns one property of a unit (systemctl show).
func (c *container) unitProperty(unit, prop string) string {
	c.t.Helper()
	return c.must("systemctl show -p " + prop + " --value " + unit)
}

// lines returns the non-empty lines of s.
func lines(s string) []string {
	var ls []string
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			ls = append(ls, l)
		}
	}
	return ls
}
