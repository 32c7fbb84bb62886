package doctor

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Units are ytkeep's systemd units and the command name (as in
// /proc/PID/comm, cut at 15 bytes) of each one's main process.
var Units = []struct{ Unit, Comm string }{
	{"ytkeep-receiver.service", "ytkeep-receiver"},
	{"ytkeep-worker.service", "ytkeep-worker"},
	{"ytkeep-downloader.service", "ytkeep-download"},
	{"ytkeep-courier.service", "ytkeep-courier"},
}

// cgroupLimit is a unit directive that systemd enforces through a cgroup
// controller, and the file that shows the limit in force: under cgroup v2
// (file in the unit's unified cgroup) or v1 (controller, file).
type cgroupLimit struct {
	directive      string
	v2File         string
	v1Ctrl, v1File string
	unlimited      []string // values that mean "no limit"
}

var cgroupLimits = []cgroupLimit{
	{"MemoryMax", "memory.max", "memory", "memory.limit_in_bytes", []string{"max", "9223372036854771712"}},
	{"TasksMax", "pids.max", "pids", "pids.max", []string{"max"}},
	{"CPUQuota", "cpu.max", "cpu", "cpu.cfs_quota_us", []string{"max", "-1"}},
	{"DevicePolicy", "", "devices", "devices.list", []string{"a *:* rwm"}},
}

// unitRoots are where checkUnits looks; tests point them at a fake tree.
type unitRoots struct {
	Proc, Cgroup string
	// UnitDirs are searched in order for a unit's file, the first found
	// is the unit (drop-ins, unit.d/*.conf, are not read).
	UnitDirs []string
	// Unified says whether Cgroup is a cgroup2 file system; nil: ask
	// the kernel (statfs).
	Unified *bool
}

// systemUnitDirs is systemd's search path for system units, in its order
// of precedence: the admin's /etc/systemd/system overrides the package's
// /usr/lib/systemd/system.
var systemUnitDirs = []string{"/etc/systemd/system", "/run/systemd/system", "/usr/local/lib/systemd/system", "/usr/lib/systemd/system", "/lib/systemd/system"}

var systemRoots = unitRoots{Proc: "/proc", Cgroup: "/sys/fs/cgroup", UnitDirs: systemUnitDirs}

// unitFile returns the path of unit's file: the first of dirs that has
// it, or an error satisfying os.IsNotExist when none does.
func unitFile(dirs []string, unit string) (string, error) {
	for _, d := range dirs {
		p := filepath.Join(d, unit)
		if _, err := os.Stat(p); err == nil || !os.IsNotExist(err) {
			return p, err
		}
	}
	return "", &os.PathError{Op: "find unit", Path: unit, Err: os.ErrNotExist}
}

// checkUnits reports, for each installed unit that is running, whether
// the kernel holds the resource limits its unit file asks for. systemd
// applies them through cgroup controllers, which a host may not give it
// (a container whose controllers are read-only, a cgroup v1 host without
// a controller): the unit still starts, the limit silently does not hold.
// Nothing here trusts the unit file's word: each limit is read back from
// the unit's cgroup.
func checkUnits(r unitRoots) []Result {
	var rs []Result
	for _, u := range Units {
		path, err := unitFile(r.UnitDirs, u.Unit)
		var want map[string]string
		if err == nil {
			want, err = unitDirectives(path)
		}
		if err != nil {
			if os.IsNotExist(err) {
				continue // not installed here (the package puts units in /usr/lib/systemd/system)
			}
			rs = append(rs, Result{Fail, fmt.Sprintf("%s: %v", u.Unit, err)})
			continue
		}
		pid := findUnitProcess(r.Proc, u.Comm, u.Unit)
		if pid == "" {
			rs = append(rs, Result{Warn, fmt.Sprintf("%s is not running: its resource limits were not checked (run doctor again once it runs)", u.Unit)})
			continue
		}
		cgs, err := readCgroups(filepath.Join(r.Proc, pid, "cgroup"))
		if err != nil {
			rs = append(rs, Result{Fail, fmt.Sprintf("%s: %v", u.Unit, err)})
			continue
		}
		var held, missing []string
		for _, l := range cgroupLimits {
			v, ok := want[l.directive]
			if !ok || (l.directive == "DevicePolicy" && v == "auto") {
				continue
			}
			what := l.directive + "=" + v
			if inForce(r.Cgroup, r.unified(), cgs, u.Unit, l) {
				held = append(held, what)
			} else {
				missing = append(missing, what)
			}
		}
		if len(held) > 0 {
			rs = append(rs, Result{OK, fmt.Sprintf("%s: in force (read back from its cgroup): %s", u.Unit, strings.Join(held, " "))})
		}
		if len(missing) > 0 {
			rs = append(rs, Result{Warn, fmt.Sprintf("%s: NOT in force here: %s: systemd has no writable cgroup controller for them on this host (a container, or cgroup v1 without the controller); the daemons' own rlimits, Landlock and seccomp still hold", u.Unit, strings.Join(missing, " "))})
		}
	}
	return rs
}

// checkCredentialFiles reports, for each installed unit, whether the
// files it loads credentials from (LoadCredential=ID:PATH) exist: systemd
// does not start a unit one of whose files is missing (243/CREDENTIALS),
// even one the daemon would not read (the receiver's secret of the other
// mode, an unused alert webhook), which the package's postinst therefore
// creates empty.
func checkCredentialFiles(unitDirs []string) []Result {
	var rs []Result
	for _, u := range Units {
		path, err := unitFile(unitDirs, u.Unit)
		var creds []string
		if err == nil {
			creds, err = unitValues(path, "LoadCredential")
		}
		if err != nil {
			if !os.IsNotExist(err) {
				rs = append(rs, Result{Fail, fmt.Sprintf("%s: %v", u.Unit, err)})
			}
			continue
		}
		var ids []string
		missing := false
		for _, c := range creds {
			id, path, ok := strings.Cut(c, ":")
			if !ok || !filepath.IsAbs(path) {
				continue // from systemd's credential store, not a file of ours
			}
			var st unix.Stat_t
			if err := unix.Stat(path, &st); err != nil {
				rs = append(rs, Result{Fail, fmt.Sprintf("%s loads the credential %s from %s: %v: systemd will not start it; create the file, empty if unused (install -m 0400 /dev/null %s)", u.Unit, id, path, err, path)})
				missing = true
				continue
			}
			ids = append(ids, id)
		}
		if !missing && len(ids) > 0 {
			rs = append(rs, Result{OK, fmt.Sprintf("%s: the files of its credentials exist (%s)", u.Unit, strings.Join(ids, ", "))})
		}
	}
	return rs
}

// unitValues returns the values of every key= line of a unit file, in
// order (for keys that may be repeated, such as LoadCredential=).
func unitValues(path, key string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var vs []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") && strings.TrimSpace(k) == key {
			vs = append(vs, strings.TrimSpace(v))
		}
	}
	return vs, sc.Err()
}

// unitDirectives reads Key=Value lines of a unit file (the last one of a
// key wins, as in systemd for these keys).
func unitDirectives(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	m := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			m[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return m, sc.Err()
}

func (r unitRoots) unified() bool {
	if r.Unified != nil {
		return *r.Unified
	}
	var st unix.Statfs_t
	return unix.Statfs(r.Cgroup, &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC
}

// findUnitProcess returns the pid of a process named comm in unit's
// cgroup, or "".
func findUnitProcess(proc, comm, unit string) string {
	ents, err := os.ReadDir(proc)
	if err != nil {
		return ""
	}
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		c, err := os.ReadFile(filepath.Join(proc, e.Name(), "comm"))
		if err != nil || strings.TrimSpace(string(c)) != comm {
			continue
		}
		cg, err := os.ReadFile(filepath.Join(proc, e.Name(), "cgroup"))
		if err == nil && strings.Contains(string(cg), "/"+unit) {
			return e.Name()
		}
	}
	return ""
}

// readCgroups parses /proc/PID/cgroup: controller (or "" for the unified
// hierarchy, "name=systemd" for systemd's own) to path.
func readCgroups(path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	m := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 {
			return nil, fmt.Errorf("malformed %s line %q", path, line)
		}
		for _, ctrl := range strings.Split(f[1], ",") {
			m[ctrl] = f[2]
		}
	}
	return m, nil
}

// inForce reports whether the limit l is set in the unit's cgroup.
func inForce(root string, unified bool, cgs map[string]string, unit string, l cgroupLimit) bool {
	unlimited := func(v string) bool {
		for _, u := range l.unlimited {
			if v == u {
				return true
			}
		}
		return false
	}
	// cgroup v2 (fully unified: /sys/fs/cgroup is cgroup2). On a hybrid
	// host systemd puts the controllers on v1, which is checked below.
	if unified {
		p, ok := cgs[""]
		if !ok || !strings.HasSuffix(p, "/"+unit) {
			return false
		}
		if l.v2File == "" {
			// DevicePolicy= is a BPF program attached to the unit's
			// cgroup, which no file shows; it holds where the unit has a
			// cgroup of its own.
			_, err := os.Stat(filepath.Join(root, p))
			return err == nil
		}
		b, err := os.ReadFile(filepath.Join(root, p, l.v2File))
		if err != nil {
			return false // the controller is not enabled for the unit
		}
		v := strings.TrimSpace(string(b))
		if l.directive == "CPUQuota" {
			v, _, _ = strings.Cut(v, " ") // "quota period"
		}
		return !unlimited(v)
	}
	// cgroup v1: the controller's own hierarchy.
	if p, ok := cgs[l.v1Ctrl]; ok && strings.HasSuffix(p, "/"+unit) {
		b, err := os.ReadFile(filepath.Join(root, l.v1Ctrl, p, l.v1File))
		if err == nil {
			return !unlimited(strings.TrimSpace(string(b)))
		}
	}
	return false
}
