package confine

import (
	"testing"

	"golang.org/x/sys/unix"
)

// TestKeepGroupFilter runs KeepGroup's filter in x/net/bpf's interpreter
// (C2): the calls that leave a process group kill, those that only read
// a group pass, and so does everything else, whatever the junk in an
// argument's upper half. The sandbox's TestChildCannotLeaveItsGroup shows
// the kernel doing the same to a child.
func TestKeepGroupFilter(t *testing.T) {
	raw, err := keepGroupProgram()
	vm := vmOf(t, raw, err)
	runCases(t, vm, []filterCase{
		{"setpgid self", sys(unix.SYS_SETPGID, 0, 0), kill},
		{"setpgid child", sys(unix.SYS_SETPGID, 1234, 1234), kill},
		{"setpgid junk", sys(unix.SYS_SETPGID, junk, junk), kill},
		{"setsid", sys(unix.SYS_SETSID), kill},
		{"getpgid", sys(unix.SYS_GETPGID, 0), allow},
		{"getpgrp", sys(unix.SYS_GETPGRP), allow},
		{"getsid", sys(unix.SYS_GETSID, 0), allow},
		{"getpid", sys(unix.SYS_GETPID), allow},
		{"clone fork", sys(unix.SYS_CLONE, glibcFork), allow},
		{"read setpgid", sys(unix.SYS_READ, unix.SYS_SETPGID), allow},
		{"i386 setpgid", call{nr: 57, arch: 0x40000003}, kill},
		{"x32 setpgid", sys(x32Bit | unix.SYS_SETPGID), kill},
	})
}
