// Package clip shortens untrusted strings for error messages and logs, so
// that an oversized value (a 1 MB ID, a label filter) is never echoed whole.
//
// It is for courier's own packages; it does not sanitize or escape: callers
// quote what they print (%q).
package clip

import "unicode/utf8"

// Bytes is how much of a value String keeps.
const Bytes = 64

// String returns s when it is at most Bytes bytes long, else its first
// Bytes bytes (cut back to a whole UTF-8 character) followed by "…".
func String(s string) string {
	if len(s) <= Bytes {
		return s
	}
	n := Bytes
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
