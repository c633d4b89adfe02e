package main

import (
	"strings"
	"testing"
	"unicode/utf8"

	courierv1 "github.com/courierq/courier/proto/courier/v1"
)

func utf8Valid(s string) bool { return utf8.ValidString(s) }

// TestProgressLine: at every width the line fits (wide characters count
// two columns), is valid UTF-8, has no control characters, and shows the
// fraction and state; a message that fits is shown whole.
func TestProgressLine(t *testing.T) {
	job := func(frac float64, msg string) *courierv1.Job {
		return &courierv1.Job{State: courierv1.State_RUNNING, Progress: &courierv1.Progress{Fraction: frac, Message: msg}}
	}
	msgs := []string{"", "copying", "étape 2 — ünïcødé", "画像を縮小しています", "e\u0301e\u0301 combining", "tab\there\nnewline\x1b[2J", strings.Repeat("🚀", 50), "\xff\xfe bad utf-8"}
	for _, cols := range []int{1, 5, 12, 20, 39, 79, 200} {
		for _, m := range msgs {
			s := progressLine(job(0.42, m), cols)
			if w := displayWidth(s); cols >= 20 && w > cols {
				t.Errorf("cols %d, message %q: %d columns: %q", cols, m, w, s)
			}
			if !utf8.ValidString(s) || strings.ContainsAny(s, "\t\n\r\x1b") {
				t.Errorf("cols %d, message %q: bad characters in %q", cols, m, s)
			}
			if cols >= 79 && !strings.Contains(s, " 42% RUNNING") {
				t.Errorf("cols %d: %q lacks the fraction and state", cols, s)
			}
		}
	}
	if s := progressLine(job(1, "画像を縮小しています"), 200); !strings.HasSuffix(s, " 画像を縮小しています") {
		t.Errorf("a message that fits is cut: %q", s)
	}
	if got, want := fit("ab画像cd", 5), "ab画…"; got != want {
		t.Errorf(`fit("ab画像cd", 5) = %q, want %q`, got, want)
	}
	if got, want := fit("ab画像cd", 4), "ab…"; got != want { // the wide 画 does not fit beside "…"
		t.Errorf(`fit("ab画像cd", 4) = %q, want %q`, got, want)
	}
}
