package metrics

import (
	"bytes"
	"io"
	"os"
	"runtime/metrics"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/prometheus/client_golang/prometheus"
)

// processCollector reports the process's memory, descriptors and CPU
// time, and two figures of the Go runtime, under ytkeep_ names: the
// textfile collector's node_exporter has process_ and go_ metrics of its
// own, which ours must not collide with. It reads /proc/self/stat and
// lists /proc/self/fd through descriptors opened at start (a confined
// daemon may not open them again), so it works under Landlock and
// seccomp alike.
type processCollector struct {
	mu        sync.Mutex
	stat, fds *os.File // nil when /proc could not be opened
	bootTime  float64  // when the system booted, Unix seconds

	rss, vsize, openFDs, maxFDs, cpu, start, goroutines, heap *prometheus.Desc
	samples                                                   []metrics.Sample
}

// clockTicks is USER_HZ, the unit of /proc's CPU times: 100 on every
// Linux architecture Go supports.
const clockTicks = 100

func newProcessCollector() *processCollector {
	c := &processCollector{
		rss:        prometheus.NewDesc("ytkeep_process_resident_memory_bytes", "Resident memory (VmRSS).", nil, nil),
		vsize:      prometheus.NewDesc("ytkeep_process_virtual_memory_bytes", "Virtual memory size.", nil, nil),
		openFDs:    prometheus.NewDesc("ytkeep_process_open_fds", "Open file descriptors.", nil, nil),
		maxFDs:     prometheus.NewDesc("ytkeep_process_max_fds", "The descriptor limit (RLIMIT_NOFILE).", nil, nil),
		cpu:        prometheus.NewDesc("ytkeep_process_cpu_seconds_total", "User and system CPU time.", nil, nil),
		start:      prometheus.NewDesc("ytkeep_process_start_time_seconds", "Start time of the process, Unix seconds.", nil, nil),
		goroutines: prometheus.NewDesc("ytkeep_go_goroutines", "Goroutines.", nil, nil),
		heap:       prometheus.NewDesc("ytkeep_go_heap_objects_bytes", "Bytes of live and not yet swept heap objects.", nil, nil),
		samples:    []metrics.Sample{{Name: "/sched/goroutines:goroutines"}, {Name: "/memory/classes/heap/objects:bytes"}},
	}
	if f, err := os.Open("/proc/self/stat"); err == nil {
		c.stat = f
	}
	if f, err := os.Open("/proc/self/fd"); err == nil {
		c.fds = f
	}
	// The boot time from the clocks, not /proc/stat: the units'
	// ProcSubset=pid hides that file.
	var up unix.Timespec
	if unix.ClockGettime(unix.CLOCK_BOOTTIME, &up) == nil {
		c.bootTime = float64(time.Now().UnixNano()-up.Nano()) / 1e9
	}
	return c
}

func (c *processCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.rss, c.vsize, c.openFDs, c.maxFDs, c.cpu, c.start, c.goroutines, c.heap} {
		ch <- d
	}
}

func (c *processCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	gauge := func(d *prometheus.Desc, v float64) { ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v) }
	if f := c.statFields(); f != nil {
		// Fields after the command's ")": f[0] is field 3 (state), so
		// field n is f[n-3]: utime 14, stime 15, starttime 22, vsize 23,
		// rss 24 (pages).
		num := func(n int) float64 { v, _ := strconv.ParseFloat(string(f[n-3]), 64); return v }
		ch <- prometheus.MustNewConstMetric(c.cpu, prometheus.CounterValue, (num(14)+num(15))/clockTicks)
		gauge(c.vsize, num(23))
		gauge(c.rss, num(24)*float64(os.Getpagesize()))
		if c.bootTime > 0 {
			gauge(c.start, c.bootTime+num(22)/clockTicks)
		}
	}
	if c.fds != nil {
		if _, err := c.fds.Seek(0, io.SeekStart); err == nil {
			if names, err := c.fds.Readdirnames(-1); err == nil {
				gauge(c.openFDs, float64(len(names)))
			}
		}
	}
	var lim unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_NOFILE, &lim) == nil {
		gauge(c.maxFDs, float64(lim.Cur))
	}
	metrics.Read(c.samples)
	for i, d := range []*prometheus.Desc{c.goroutines, c.heap} {
		if c.samples[i].Value.Kind() == metrics.KindUint64 {
			gauge(d, float64(c.samples[i].Value.Uint64()))
		}
	}
}

// statFields reads /proc/self/stat again and returns its fields after
// the command name, or nil.
func (c *processCollector) statFields() [][]byte {
	if c.stat == nil {
		return nil
	}
	buf := make([]byte, 2048)
	n, err := c.stat.ReadAt(buf, 0)
	if err != nil && err != io.EOF {
		return nil
	}
	i := bytes.LastIndexByte(buf[:n], ')')
	if i < 0 {
		return nil
	}
	f := bytes.Fields(buf[i+1 : n])
	if len(f) < 24-3+1 {
		return nil
	}
	return f
}
