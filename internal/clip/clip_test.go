package clip_test

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/courierq/courier/internal/clip"
)

func TestString(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"", ""},
		{"short", "short"},
		{strings.Repeat("a", 64), strings.Repeat("a", 64)},
		{strings.Repeat("a", 65), strings.Repeat("a", 64) + "…"},
		// 63 bytes, then a 3-byte character across the cut: it goes whole.
		{strings.Repeat("a", 63) + "€€", strings.Repeat("a", 63) + "…"},
		{strings.Repeat("é", 1<<20), strings.Repeat("é", 32) + "…"},
	} {
		got := clip.String(c.in)
		if got != c.want || !utf8.ValidString(got) {
			t.Errorf("String(%d bytes) = %q, want %q", len(c.in), got, c.want)
		}
	}
}
