package main

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"sigs.k8s.io/yaml"
)

// profileFile is the profile file: named connection settings.
type profileFile struct {
	// Profile is used when neither --profile nor $COURIER_PROFILE names one.
	Profile  string             `json:"profile,omitempty"`
	Profiles map[string]profile `json:"profiles"`
}

// profile is one server's settings; each is what the flag of the same name
// sets. Relative file names are relative to the profile file's folder.
type profile struct {
	Addr       string `json:"addr,omitempty"`
	Output     string `json:"output,omitempty"`
	TLS        bool   `json:"tls,omitempty"`
	CAFile     string `json:"caFile,omitempty"`
	CertFile   string `json:"certFile,omitempty"`
	KeyFile    string `json:"keyFile,omitempty"`
	ServerName string `json:"serverName,omitempty"`
	TokenFile  string `json:"tokenFile,omitempty"`
}

// loadProfiles reads the profile file: flagPath, else $COURIER_CONFIG, else
// the default path when it exists. It returns nil when there is none, and
// the file's folder.
func loadProfiles(flagPath string, getenv func(string) string) (*profileFile, string, error) {
	path := first(flagPath, getenv("COURIER_CONFIG"))
	explicit := path != ""
	if !explicit {
		dir, err := os.UserConfigDir()
		if err != nil {
			return nil, "", nil // no home, no default file
		}
		path = filepath.Join(dir, "courier", "config.yaml")
	}
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist) && !explicit:
		return nil, "", nil
	case err != nil:
		return nil, "", fmt.Errorf("profile file: %w", err)
	}
	var pf profileFile
	if err := yaml.UnmarshalStrict(data, &pf); err != nil {
		return nil, "", fmt.Errorf("profile file %s: %w", path, err)
	}
	return &pf, filepath.Dir(path), nil
}

func (pf *profileFile) names() []string {
	if pf == nil {
		return nil
	}
	return slices.Sorted(maps.Keys(pf.Profiles))
}

// pick returns the profile named name, else the file's default one, else
// none (the zero profile). Naming a profile that is not there is an error.
func (pf *profileFile) pick(name string) (profile, error) {
	if pf == nil {
		if name != "" {
			return profile{}, fmt.Errorf("profile %q: there is no profile file; write one (see courier --help) or pass --config FILE", name)
		}
		return profile{}, nil
	}
	if name == "" {
		name = pf.Profile
	}
	if name == "" {
		return profile{}, nil
	}
	p, ok := pf.Profiles[name]
	if !ok {
		return profile{}, fmt.Errorf("profile %q is not in the profile file; its profiles are %s", name, strings.Join(pf.names(), ", "))
	}
	return p, nil
}

// resolvePaths makes the profile's file names absolute: "~/" is the home
// folder, and relative names are relative to dir.
func (p profile) resolvePaths(dir string) profile {
	fix := func(s string) string {
		switch {
		case s == "":
			return ""
		case strings.HasPrefix(s, "~/"):
			if home, err := os.UserHomeDir(); err == nil {
				return filepath.Join(home, s[2:])
			}
			return s
		case filepath.IsAbs(s) || dir == "":
			return s
		}
		return filepath.Join(dir, s)
	}
	p.CAFile, p.CertFile, p.KeyFile, p.TokenFile = fix(p.CAFile), fix(p.CertFile), fix(p.KeyFile), fix(p.TokenFile)
	return p
}
