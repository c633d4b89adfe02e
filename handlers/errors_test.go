package handlers

import (
	"errors"
	"fmt"
	"testing"
)

func TestPermanent(t *testing.T) {
	base := errors.New("bad input")
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"plain", base, false},
		{"permanent", Permanent(base), true},
		{"wrapped permanent", fmt.Errorf("ctx: %w", Permanent(base)), true},
		{"nil", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := IsPermanent(tc.err); got != tc.want {
				t.Fatalf("IsPermanent(%v) = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
	if !errors.Is(Permanent(base), base) {
		t.Fatal("Permanent does not wrap its error")
	}
	if Permanent(nil) != nil {
		t.Fatal("Permanent(nil) != nil")
	}
}
