package confine

// int80Getpid makes a 32-bit system call; see int80_amd64.s. Only the
// layer tests call it.
func int80Getpid() int64
