//go:build unix

package main

import (
	"os"
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

// brokerPID is the local RabbitMQ node's process (beam.smp) that the
// benchmark talks to, or 0 when it is not on this machine (or cannot be
// read). newEnv sets it.
var brokerPID = 0

// findBroker returns the pid of the beam.smp process that listens on the
// TCP port, or 0. A machine may run several RabbitMQ nodes: the one on the
// broker URL's port is the one whose CPU counts.
func findBroker(port int) int {
	sockets := listening(port)
	if len(sockets) == 0 {
		return 0
	}
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		if strings.TrimSpace(readFile(d+"/comm")) != "beam.smp" {
			continue
		}
		fds, _ := os.ReadDir(d + "/fd")
		for _, fd := range fds {
			if target, err := os.Readlink(d + "/fd/" + fd.Name()); err == nil && sockets[target] {
				pid, _ := strconv.Atoi(filepath.Base(d))
				return pid
			}
		}
	}
	return 0
}

// listening returns the sockets that listen on the TCP port, as their
// /proc/PID/fd links read ("socket:[inode]").
func listening(port int) map[string]bool {
	hexPort := ":" + strings.ToUpper(strconv.FormatInt(int64(port), 16))
	for len(hexPort) < 5 {
		hexPort = ":0" + hexPort[1:]
	}
	sockets := make(map[string]bool)
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		// sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
		for _, line := range strings.Split(readFile(table), "\n") {
			f := strings.Fields(line)
			if len(f) > 9 && f[3] == "0A" && strings.HasSuffix(f[1], hexPort) {
				sockets["socket:["+f[9]+"]"] = true
			}
		}
	}
	return sockets
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
