package emulator_test

import (
	"context"
	"os"
	"sync"
	"testing"
	"time"

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
	emulatortest.Run(t, courierWithClock(emulator.Config{}), courierFeatures())
}

// TestCourierInProcessConformance runs the suite on emulators that listen
// on no port (Config.InProcess).
func TestCourierInProcessConformance(t *testing.T) {
	emulatortest.Run(t, courierWithClock(emulator.Config{InProcess: true}), courierFeatures())
}

// clocks holds each test emulator's clock, for Features.Advance.
var clocks sync.Map // *emulator.Server → *emulatortest.Clock

// courierWithClock starts a courier emulator with cfg and a clock of its
// own for each subtest.
func courierWithClock(cfg emulator.Config) func(t *testing.T) *emulator.Server {
	return func(t *testing.T) *emulator.Server {
		clock := &emulatortest.Clock{}
		c := cfg
		c.Now = clock.Now
		srv, err := emulator.Start(context.Background(), c)
		if err != nil {
			t.Fatal(err)
		}
		clocks.Store(srv, clock)
		t.Cleanup(func() {
			srv.Close()
			clocks.Delete(srv)
		})
		return srv
	}
}

func courierFeatures() emulatortest.Features {
	f := emulatortest.Courier()
	f.Advance = func(srv *emulator.Server, d time.Duration) {
		c, _ := clocks.Load(srv)
		c.(*emulatortest.Clock).Advance(d)
	}
	return f
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
