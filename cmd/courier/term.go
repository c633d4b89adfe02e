package main

import (
	"fmt"
	"io"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/term"
	"golang.org/x/text/width"

	courierv1 "github.com/courierq/courier/proto/courier/v1"
)

// terminalWidth reports whether w is a terminal and, if so, its width in
// columns (80 when the terminal does not say). A file, a pipe or /dev/null
// is not a terminal.
func terminalWidth(w io.Writer) (cols int, ok bool) {
	f, isFile := w.(interface{ Fd() uintptr })
	if !isFile || !term.IsTerminal(int(f.Fd())) {
		return 0, false
	}
	cols, _, err := term.GetSize(int(f.Fd()))
	if err != nil || cols <= 0 {
		cols = 80
	}
	return cols, true
}

// progressLine renders "[#####.....]  50% RUNNING message" in at most cols
// display columns (counting wide characters as two), never cutting a
// character, with the bar's length adapted to the width.
func progressLine(j *courierv1.Job, cols int) string {
	frac := j.GetProgress().GetFraction()
	if j.GetState() == courierv1.State_SUCCEEDED {
		frac = 1
	}
	frac = min(max(frac, 0), 1)
	barLen := min(max(cols/3, 10), 40)
	n := int(frac*float64(barLen) + 0.5)
	s := fmt.Sprintf("[%s%s] %3.0f%% %s", strings.Repeat("#", n), strings.Repeat(".", barLen-n), frac*100, j.GetState())
	if msg := printable(j.GetProgress().GetMessage()); msg != "" {
		s += " " + msg
	}
	return fit(s, cols)
}

// printable replaces control characters (a progress message could hold
// escape sequences or new lines) with spaces, and invalid UTF-8 with U+FFFD.
func printable(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
}

// fit cuts s to at most cols display columns, at a character boundary,
// ending a cut string with "…".
func fit(s string, cols int) string {
	if cols <= 0 || displayWidth(s) <= cols {
		return s
	}
	used := 0
	for i, r := range s {
		w := runeWidth(r)
		if used+w > cols-1 { // room for "…"
			return s[:i] + "…"
		}
		used += w
	}
	return s
}

// displayWidth is the number of terminal columns s takes.
func displayWidth(s string) int {
	n := 0
	for _, r := range s {
		n += runeWidth(r)
	}
	return n
}

// runeWidth is the columns a character takes: 2 for East Asian wide and
// full-width ones, 0 for combining marks, else 1.
func runeWidth(r rune) int {
	switch {
	case r == utf8.RuneError:
		return 1
	case unicode.In(r, unicode.Mn, unicode.Me, unicode.Cf):
		return 0
	}
	switch width.LookupRune(r).Kind() {
	case width.EastAsianWide, width.EastAsianFullwidth:
		return 2
	}
	return 1
}
