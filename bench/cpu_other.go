//go:build !unix

package main

import "time"

// cpuTime is not measured here.
func cpuTime() time.Duration { return 0 }

// brokerCPU is not measured here.
func brokerCPU() time.Duration { return 0 }

// brokerPID is never known here.
var brokerPID = 0

// findBroker never finds the broker here.
func findBroker(int) int { return 0 }
