package parked

import (
	"crypto/sha256"
	"encoding/hex"
	"regexp"
	"strings"
)

// Error texts differ by the ids and numbers in them ("order 4711 not
// found", "timeout after 1500ms"); a group is the text with those replaced.
var (
	uuidPattern = regexp.MustCompile(`[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}`)
	// A token with a digit: isID tells an id (a hash, an object id) from a
	// number or a word.
	idPattern = regexp.MustCompile(`\b[A-Za-z0-9_]*[0-9][A-Za-z0-9_]*\b`)
	// A number, with the letters that may lead it: "v2" and "sha256" stay.
	numberPattern = regexp.MustCompile(`[A-Za-z_]*[0-9]+(?:\.[0-9]+)*`)
)

// Normalize is the group of an error text: UUIDs and other ids become
// <id>, numbers <n>, and runs of white space one space.
func Normalize(text string) string {
	s := uuidPattern.ReplaceAllString(text, "<id>")
	s = idPattern.ReplaceAllStringFunc(s, func(tok string) string {
		if isID(tok) {
			return "<id>"
		}
		return tok
	})
	s = numberPattern.ReplaceAllStringFunc(s, func(tok string) string {
		if c := tok[0]; c >= '0' && c <= '9' {
			return "<n>"
		}
		return tok
	})
	return strings.Join(strings.Fields(s), " ")
}

// isID tells a token that names one thing rather than a kind of thing.
func isID(tok string) bool {
	var letters, digits, hexOnly = 0, 0, true
	for _, c := range tok {
		switch {
		case c >= '0' && c <= '9':
			digits++
		case c >= 'a' && c <= 'f', c >= 'A' && c <= 'F':
			letters++
		default:
			letters++
			hexOnly = false
		}
	}
	if digits == 0 || letters == 0 {
		return false // a plain number or a word
	}
	return (hexOnly && len(tok) >= 8) || len(tok) >= 12
}

// GroupID names the group of an error text: eight hex digits of the
// SHA-256 of [Normalize]'s text, stable from run to run.
func GroupID(errorText string) string { return PatternID(Normalize(errorText)) }

// PatternID is the GroupID of a normalized error text.
func PatternID(pattern string) string {
	sum := sha256.Sum256([]byte(pattern))
	return hex.EncodeToString(sum[:4])
}
