package spool

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
)

// Under systemd's PrivateUsers=yes a daemon sees only its own user and
// group; the downloads directory's group (ytkeep-media) shows as the
// overflow group, and chown to it fails with EINVAL. The stored file has
// the right group already (setgid directory), so SetGroup must not chown.
// The test runs a child in a user namespace mapped as systemd maps one.
func TestSetGroupUnderPrivateUsers(t *testing.T) {
	if dir := os.Getenv("YTKEEP_SETGROUP_DIR"); dir != "" {
		setGroupChild(t, dir)
		return
	}
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("CI must run this test as root")
		}
		t.Skip("SKIPPED: needs root to map users into a user namespace")
	}
	const uid, gid, mediaGID = 61002, 61010, 61011
	root := t.TempDir()
	// The child (another user) must reach it.
	os.Chmod(filepath.Dir(root), 0o755)
	os.Chmod(root, 0o755)
	dir := filepath.Join(root, "downloads")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, uid, mediaGID); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o2750|os.ModeSetgid); err != nil {
		t.Fatal(err)
	}
	// The test binary's own directory is root's alone: run a copy.
	self, _ := os.Executable()
	bin, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	child := filepath.Join(root, "spool.test")
	if err := os.WriteFile(child, bin, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(child, "-test.run=^TestSetGroupUnderPrivateUsers$", "-test.v")
	cmd.Env = []string{"YTKEEP_SETGROUP_DIR=" + dir}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWUSER,
		// As PrivateUsers=yes: root, and the unit's user and group.
		UidMappings:                []syscall.SysProcIDMap{{ContainerID: 0, HostID: 0, Size: 1}, {ContainerID: uid, HostID: uid, Size: 1}},
		GidMappings:                []syscall.SysProcIDMap{{ContainerID: 0, HostID: 0, Size: 1}, {ContainerID: gid, HostID: gid, Size: 1}},
		GidMappingsEnableSetgroups: false,
		Credential:                 &syscall.Credential{Uid: uid, Gid: gid, NoSetGroups: true},
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(filepath.Join(dir, "file"), &st); err != nil {
		t.Fatal(err)
	}
	if st.Gid != mediaGID {
		t.Fatalf("stored file has group %d, want %d", st.Gid, mediaGID)
	}
}

func setGroupChild(t *testing.T, dir string) {
	d, err := OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	gid, err := d.Group()
	if err != nil {
		t.Fatal(err)
	}
	if gid != 65534 {
		t.Fatalf("the directory's group shows as %d, want the overflow group: the test does not map users as systemd does", gid)
	}
	f, err := os.OpenFile(filepath.Join(dir, "file"), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o640)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// The plain chown fails here, as it did under systemd.
	if err := f.Chown(-1, gid); err == nil {
		t.Fatal("chown to the overflow group succeeded: the test does not reproduce PrivateUsers=")
	}
	if err := SetGroup(f, gid); err != nil {
		t.Fatalf("SetGroup(%d): %v", gid, err)
	}
	t.Logf("SetGroup kept the setgid directory's group (seen as %s)", strconv.Itoa(gid))
}
