// Package config is the format of courierd's --config file and its
// validation: one YAML file (JSON is valid YAML too) that mirrors the Config
// structs of the packages it configures. YAML, because operators comment
// their configs; it is decoded strictly (sigs.k8s.io/yaml: YAML to JSON, then
// encoding/json with unknown fields refused), so a typo is an error naming
// the field, not a silently ignored setting.
//
// It is for cmd/courierd and tests that start it. It does no I/O beyond
// reading the file and builds nothing: cmd wires the values it holds.
package config

import (
	_ "embed"
	"errors"
	"fmt"
	"os"

	"sigs.k8s.io/yaml"

	"github.com/courierq/courier/backend"
)

// Demo is the committed demo configuration (demo.yaml), which courierd runs
// when started without --config.
//
//go:embed demo.yaml
var Demo []byte

// Config is the whole courierd configuration.
type Config struct {
	// GRPC configures the gRPC server: address, TLS, authentication and
	// per-service policies.
	GRPC backend.Config `json:"grpc"`
	// HTTP configures the HTTP server (dashboard, /metrics, /healthz).
	HTTP HTTP `json:"http"`
}

// HTTP configures the HTTP server.
type HTTP struct {
	// Addr is the listen address. "" means 127.0.0.1:8006; "-" turns the
	// HTTP server off.
	Addr string `json:"addr,omitempty"`
}

// Parse decodes and validates a configuration document.
func Parse(data []byte) (*Config, error) {
	var c Config
	if err := yaml.UnmarshalStrict(data, &c); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if err := c.validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// Load reads and parses the file at path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	c, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// ValidationError names the field that is wrong and says how to fix it.
type ValidationError struct {
	Field string
	Value any
	Fix   string
}

func (e *ValidationError) Error() string {
	return fmt.Sprintf("config: %s: %v: %s", e.Field, e.Value, e.Fix)
}

func (c *Config) validate() error {
	var errs []error
	if c.GRPC.DevMode && c.GRPC.Addr != "" {
		if err := loopbackAddr(c.GRPC.Addr); err != nil {
			errs = append(errs, &ValidationError{"grpc.addr", c.GRPC.Addr, "devMode serves only on loopback: use 127.0.0.1:PORT, or set devMode: false and configure grpc.auth"})
		}
	}
	if c.GRPC.DevMode && c.HTTP.Addr != "" && c.HTTP.Addr != "-" {
		if err := loopbackAddr(c.HTTP.Addr); err != nil {
			errs = append(errs, &ValidationError{"http.addr", c.HTTP.Addr, "devMode serves only on loopback: use 127.0.0.1:PORT"})
		}
	}
	return errors.Join(errs...)
}
