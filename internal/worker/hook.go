package worker

// inputHook, when set, sees every claimed job file's bytes before they are
// parsed. Only the assume-breach build sets it (hook_breach.go), to stand
// for a bug in job parsing that gives whoever can write a job file code
// execution inside the worker. Release builds leave it nil.
var inputHook func(data string)
