//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package main

import "os"

// windowWidth is unknown here: terminalWidth falls back to $COLUMNS.
func windowWidth(*os.File) int { return 0 }
