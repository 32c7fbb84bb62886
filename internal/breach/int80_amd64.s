//go:build breach

#include "textflag.h"

// func int80Getpid() int64: the i386 getpid system call through int $0x80.
TEXT ·int80Getpid(SB), NOSPLIT, $0-8
	MOVQ $20, AX
	INT $0x80
	MOVQ AX, ret+0(FP)
	RET
