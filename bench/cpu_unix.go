//go:build unix

package main

import (
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// cpuTime is the CPU time this process has used, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// brokerPID is the local RabbitMQ node's process (beam.smp), or 0 when
// there is none on this machine (or it cannot be read).
var brokerPID = findBroker()

func findBroker() int {
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		if strings.TrimSpace(readFile(d+"/comm")) == "beam.smp" {
			pid, _ := strconv.Atoi(filepath.Base(d))
			return pid
		}
	}
	return 0
}

// brokerCPU is the CPU time the local broker has used, user and system, or
// 0 when there is no local broker. It assumes 100 clock ticks a second, as
// on Linux for x86 and arm.
func brokerCPU() time.Duration {
	if brokerPID == 0 {
		return 0
	}
	stat := readFile("/proc/" + strconv.Itoa(brokerPID) + "/stat")
	// Fields after the command name, which is in parentheses: utime and
	// stime are the 12th and 13th.
	_, rest, ok := strings.Cut(stat, ") ")
	f := strings.Fields(rest)
	if !ok || len(f) < 13 {
		return 0
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0
	}
	return time.Duration(ut+st) * (time.Second / 100)
}
