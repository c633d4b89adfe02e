package emulator_test

import (
	"context"
	"os"
	"sync"
	"testing"

	"github.com/courierq/courier/emulator"
	"github.com/courierq/courier/emulator/emulatortest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	google.close()
	if built.dir != "" {
		os.RemoveAll(built.dir) // the pubsub-emulator binary built by binary()
	}
	os.Exit(code)
}

func TestCourierConformance(t *testing.T) {
	emulatortest.Run(t, func(t *testing.T) *emulator.Server {
		srv, err := emulator.Start(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { srv.Close() })
		return srv
	}, emulatortest.Courier())
}

// googleFeatures is what Google's emulator does faithfully, as the suite
// found it; the rest it skips with the reason.
var googleFeatures = emulatortest.Features{
	Name:           "Google's emulator",
	DeadLetter:     true,
	SnapshotsSeek:  true,
	Push:           true,
	TopicRetention: true,
	Schemas:        true,
	Validation:     true,
}

func TestGoogleConformance(t *testing.T) {
	emulatortest.Run(t, func(t *testing.T) *emulator.Server { return google.get(t) }, googleFeatures)
}

// google shares one Google emulator (a JVM of about 500 MB) among all the
// tests of this binary; TestMain closes it.
var google sharedGoogle

type sharedGoogle struct {
	once sync.Once
	srv  *emulator.Server
	err  error
}

func (g *sharedGoogle) get(t *testing.T) *emulator.Server {
	g.once.Do(func() { g.srv, g.err = emulator.StartGoogle(context.Background(), emulator.GoogleConfig{}) })
	if g.err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("Google's emulator is required under CI=true: %v", g.err)
		}
		t.Skipf("Google's emulator unavailable: %v", g.err)
	}
	return g.srv
}

func (g *sharedGoogle) close() {
	if g.srv != nil {
		g.srv.Close()
	}
}
