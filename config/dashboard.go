package config

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// Dashboard configures the dashboard. In a config file http.dashboard is
// either just its mode ("on" or "off") or an object:
//
//	http:
//	  dashboard:
//	    readRoles: [operator, viewer]
type Dashboard struct {
	// Mode: "" or "on" serves the dashboard at /; "off" does not.
	Mode string `json:"mode,omitempty"`
	// ReadRoles, when grpc.devMode is off, closes the dashboard (every page
	// and action; not its static files, /metrics or /readyz) to callers
	// that the gRPC server's authenticators do not recognise as holding one
	// of these roles: a bearer token in the Authorization header (from
	// grpc.auth.tokensFile), or X-WEBAUTH-USER/X-WEBAUTH-ROLES set by an
	// authenticating proxy (grpc.auth.proxyHeaders, from
	// grpc.auth.trustedProxies when set). Empty: pages are open to whoever
	// reaches the HTTP port, like /metrics. Dev mode ignores it. Actions
	// are checked again by the gRPC API's policy.
	ReadRoles []string `json:"readRoles,omitempty"`
}

// Off reports whether the dashboard is turned off.
func (d Dashboard) Off() bool { return d.Mode == "off" }

// UnmarshalJSON reads a mode string or a strict object.
func (d *Dashboard) UnmarshalJSON(b []byte) error {
	var mode string
	if err := json.Unmarshal(b, &mode); err == nil {
		*d = Dashboard{Mode: mode}
		return nil
	}
	type plain Dashboard
	var p plain
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return fmt.Errorf("http.dashboard must be \"on\", \"off\" or an object with mode and readRoles: %w", err)
	}
	*d = Dashboard(p)
	return nil
}
