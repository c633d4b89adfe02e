package jobservice_test

import (
	"testing"

	"github.com/courierq/courier/internal/testenv"
)

// TestMain stops the emulators the tests started (the Spanner emulator of
// the spanner store kind).
func TestMain(m *testing.M) { testenv.Main(m) }
