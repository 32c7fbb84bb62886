#include "textflag.h"

// func int80Getpid() int64
// Makes the i386 getpid system call (number 20) through int $0x80, as a
// foreign-architecture escape attempt would. Used by the layer tests.
TEXT ·int80Getpid(SB), NOSPLIT, $0-8
	MOVQ $20, AX
	INT $0x80
	MOVQ AX, ret+0(FP)
	RET
