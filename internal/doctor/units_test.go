package doctor

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// fakeHost lays out /proc, /sys/fs/cgroup and /etc/systemd/system for one
// running worker whose cgroup files are given (path relative to the
// cgroup root -> content).
func fakeHost(t *testing.T, procCgroup string, files map[string]string) unitRoots {
	t.Helper()
	root := t.TempDir()
	r := unitRoots{Proc: filepath.Join(root, "proc"), Cgroup: filepath.Join(root, "cgroup"), UnitDirs: []string{filepath.Join(root, "etc-units"), filepath.Join(root, "units")}}
	write := func(p, data string) {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(r.UnitDirs[1], "ytkeep-worker.service"), "[Service]\n# MemoryMax=1G is a comment\nMemoryMax=2G\nTasksMax=256\nCPUQuota=150%\nDevicePolicy=closed\n")
	write(filepath.Join(r.Proc, "4242", "comm"), "ytkeep-worker\n")
	write(filepath.Join(r.Proc, "4242", "cgroup"), procCgroup)
	// A process of the same name outside the unit is not it.
	write(filepath.Join(r.Proc, "77", "comm"), "ytkeep-worker\n")
	write(filepath.Join(r.Proc, "77", "cgroup"), "0::/user.slice\n")
	for p, data := range files {
		write(filepath.Join(r.Cgroup, p), data)
	}
	return r
}

const svc = "/system.slice/ytkeep-worker.service"

var v1Cgroup = "9:name=systemd:" + svc + "\n8:pids:" + svc + "\n5:devices:" + svc + "\n4:memory:" + svc + "\n2:cpu,cpuacct:" + svc + "\n0::" + svc + "\n"

func TestUnitLimits(t *testing.T) {
	yes, no := true, false
	tests := []struct {
		name        string
		unified     bool
		procCgroup  string
		files       map[string]string
		held, unmet []string
	}{
		{"cgroup v2, all in force", true, "0::" + svc + "\n", map[string]string{
			svc + "/memory.max": "2147483648\n", svc + "/pids.max": "256\n", svc + "/cpu.max": "150000 100000\n"},
			[]string{"MemoryMax=2G", "TasksMax=256", "CPUQuota=150%", "DevicePolicy=closed"}, nil},
		{"cgroup v2, memory controller not enabled", true, "0::" + svc + "\n", map[string]string{
			svc + "/pids.max": "256\n", svc + "/cpu.max": "max 100000\n"},
			[]string{"TasksMax=256", "DevicePolicy=closed"}, []string{"MemoryMax=2G", "CPUQuota=150%"}},
		{"cgroup v1, all in force", false, v1Cgroup, map[string]string{
			"memory" + svc + "/memory.limit_in_bytes": "2147483648\n", "pids" + svc + "/pids.max": "256\n",
			"cpu" + svc + "/cpu.cfs_quota_us": "150000\n", "devices" + svc + "/devices.list": "c 1:3 rwm\n"},
			[]string{"MemoryMax=2G", "TasksMax=256", "CPUQuota=150%", "DevicePolicy=closed"}, nil},
		{"container: read-only controllers leave the unit in the root cgroup", false,
			"9:name=systemd:" + svc + "\n8:pids:/\n5:devices:/\n4:memory:/\n2:cpu,cpuacct:/\n0::" + svc + "\n", map[string]string{
				"memory/memory.limit_in_bytes": "9223372036854771712\n", "pids/pids.max": "max\n", "devices/devices.list": "a *:* rwm\n"},
			nil, []string{"MemoryMax=2G", "TasksMax=256", "CPUQuota=150%", "DevicePolicy=closed"}},
		{"cgroup v1, unit cgroup without limits", false, v1Cgroup, map[string]string{
			"memory" + svc + "/memory.limit_in_bytes": "9223372036854771712\n", "pids" + svc + "/pids.max": "max\n",
			"cpu" + svc + "/cpu.cfs_quota_us": "-1\n", "devices" + svc + "/devices.list": "a *:* rwm\n"},
			nil, []string{"MemoryMax=2G", "TasksMax=256", "CPUQuota=150%", "DevicePolicy=closed"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := fakeHost(t, tt.procCgroup, tt.files)
			r.Unified = &no
			if tt.unified {
				r.Unified = &yes
			}
			rs := checkUnits(r)
			var ok, warn string
			for _, x := range rs {
				switch x.Level {
				case OK:
					ok += x.What
				case Warn:
					warn += x.What
				default:
					t.Errorf("unexpected %s: %s", x.Level, x.What)
				}
			}
			for _, h := range tt.held {
				if !strings.Contains(ok, h) || strings.Contains(warn, h) {
					t.Errorf("%s should be reported in force; OK: %q WARN: %q", h, ok, warn)
				}
			}
			for _, u := range tt.unmet {
				if !strings.Contains(warn, u) || strings.Contains(ok, u) {
					t.Errorf("%s should be reported NOT in force; OK: %q WARN: %q", u, ok, warn)
				}
			}
			if len(tt.unmet) == 0 && warn != "" {
				t.Errorf("unexpected warning: %s", warn)
			}
		})
	}
}

func TestUnitLimitsNotRunning(t *testing.T) {
	r := fakeHost(t, "0::/user.slice\n", nil)
	rs := checkUnits(r)
	if len(rs) != 1 || rs[0].Level != Warn || !strings.Contains(rs[0].What, "ytkeep-worker.service is not running") {
		t.Fatalf("got %+v", rs)
	}
}

// Every unit ytkeep ships has its limits checked.
func TestUnitsListsEveryShippedUnit(t *testing.T) {
	paths, err := filepath.Glob("../../deploy/systemd/*.service")
	if err != nil || len(paths) == 0 {
		t.Fatalf("no units in deploy/systemd: %v", err)
	}
	listed := map[string]bool{}
	for _, u := range Units {
		listed[u.Unit] = true
		b, err := os.ReadFile(filepath.Join("../../deploy/systemd", u.Unit))
		if err != nil {
			t.Errorf("Units names %s, which deploy/systemd lacks", u.Unit)
			continue
		}
		// The kernel keeps 15 bytes of a command's name.
		_, rest, _ := strings.Cut(string(b), "\nExecStart=/usr/bin/")
		bin, _, _ := strings.Cut(rest, " ")
		if bin == "" || bin[:min(len(bin), 15)] != u.Comm {
			t.Errorf("%s starts %q, whose command name is not %s", u.Unit, bin, u.Comm)
		}
	}
	for _, p := range paths {
		if !listed[filepath.Base(p)] {
			t.Errorf("doctor.Units lacks %s", filepath.Base(p))
		}
	}
}

// TestCredentialFiles: a unit whose credential file is missing does not
// start, whatever its mode reads; doctor fails each missing file and
// passes a unit whose files are all there (empty or not).
func TestCredentialFiles(t *testing.T) {
	dir := t.TempDir()
	units := filepath.Join(dir, "units")
	if err := os.Mkdir(units, 0o755); err != nil {
		t.Fatal(err)
	}
	token, secret, hook := filepath.Join(dir, "app_token"), filepath.Join(dir, "signing_secret"), filepath.Join(dir, "alert_webhook")
	unit := "[Service]\n# LoadCredential=commented:" + filepath.Join(dir, "nothing") + "\n" +
		"LoadCredential=app_token:" + token + "\nLoadCredential=signing_secret:" + secret + "\n" +
		"LoadCredential = alert_webhook:" + hook + "\nLoadCredential=from_the_store\n"
	if err := os.WriteFile(filepath.Join(units, "ytkeep-receiver.service"), []byte(unit), 0o644); err != nil {
		t.Fatal(err)
	}
	// Not installed: nothing to say.
	if rs := checkCredentialFiles([]string{filepath.Join(dir, "none")}); len(rs) != 0 {
		t.Errorf("no units installed: %+v", rs)
	}
	// None of the files.
	rs := checkCredentialFiles([]string{units})
	if len(rs) != 3 {
		t.Fatalf("three files missing: %+v", rs)
	}
	for i, id := range []string{"app_token", "signing_secret", "alert_webhook"} {
		want := "ytkeep-receiver.service loads the credential " + id + " from " + filepath.Join(dir, id) + ": no such file or directory: systemd will not start it; create the file, empty if unused"
		if rs[i].Level != Fail || !strings.Contains(rs[i].What, want) {
			t.Errorf("%+v, want FAIL %q", rs[i], want)
		}
	}
	// One missing: only it.
	for _, f := range []string{token, secret} {
		if err := os.WriteFile(f, nil, 0o400); err != nil {
			t.Fatal(err)
		}
	}
	if rs := checkCredentialFiles([]string{units}); len(rs) != 1 || rs[0].Level != Fail || !strings.Contains(rs[0].What, "alert_webhook from "+hook) {
		t.Errorf("alert_webhook missing: %+v", rs)
	}
	// All there, empty: the unit starts.
	if err := os.WriteFile(hook, nil, 0o400); err != nil {
		t.Fatal(err)
	}
	if rs := checkCredentialFiles([]string{filepath.Join(dir, "none"), units}); len(rs) != 1 || rs[0].Level != OK ||
		rs[0].What != "ytkeep-receiver.service: the files of its credentials exist (app_token, signing_secret, alert_webhook)" {
		t.Errorf("all there: %+v", rs)
	}
}

// TestShippedCredentials: doctor reads the receiver's shipped unit as
// systemd does (scripts/check-deb.sh checks that the package creates
// each file).
func TestShippedCredentials(t *testing.T) {
	creds, err := unitValues("../../deploy/systemd/ytkeep-receiver.service", "LoadCredential")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"app_token:/etc/ytkeep/app_token", "signing_secret:/etc/ytkeep/signing_secret", "alert_webhook:/etc/ytkeep/alert_webhook"}
	if !slices.Equal(creds, want) {
		t.Errorf("the receiver's unit loads %q, want %q", creds, want)
	}
}

// TestUnitFile: a unit's file is the first found in systemd's order, so
// that an admin's copy in /etc/systemd/system is the one checked, and the
// package's in /usr/lib/systemd/system otherwise.
func TestUnitFile(t *testing.T) {
	dir := t.TempDir()
	etc, lib := filepath.Join(dir, "etc"), filepath.Join(dir, "lib")
	for _, d := range []string{etc, lib} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(p string) {
		if err := os.WriteFile(p, []byte("[Service]\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	dirs := []string{etc, lib}
	if _, err := unitFile(dirs, "ytkeep-worker.service"); !os.IsNotExist(err) {
		t.Errorf("no unit anywhere: %v, want a not-exist error", err)
	}
	write(filepath.Join(lib, "ytkeep-worker.service"))
	if p, err := unitFile(dirs, "ytkeep-worker.service"); err != nil || p != filepath.Join(lib, "ytkeep-worker.service") {
		t.Errorf("the package's unit: %q, %v", p, err)
	}
	write(filepath.Join(etc, "ytkeep-worker.service"))
	if p, err := unitFile(dirs, "ytkeep-worker.service"); err != nil || p != filepath.Join(etc, "ytkeep-worker.service") {
		t.Errorf("the admin's unit overrides the package's: %q, %v", p, err)
	}
	if !slices.Contains(systemUnitDirs, "/usr/lib/systemd/system") || systemUnitDirs[0] != "/etc/systemd/system" {
		t.Errorf("systemUnitDirs %q: want /etc/systemd/system first, /usr/lib/systemd/system in it", systemUnitDirs)
	}
}
