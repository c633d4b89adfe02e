package main

import (
	"encoding/json"
	"fmt"
	"runtime/debug"

	"github.com/spf13/cobra"
)

func newVersionCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "print the CLI's version (module version, commit, Go version)",
		Args:  args(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if g.format == "json" {
				b, err := json.MarshalIndent(buildInfo(), "", "  ")
				if err != nil {
					return err
				}
				_, err = fmt.Fprintln(g.stdout, string(b))
				return err
			}
			_, err := fmt.Fprintf(g.stdout, "courier %s\n", version())
			return err
		},
	}
}

// versionInfo is what the binary knows of its build.
type versionInfo struct {
	Version  string `json:"version"`            // module version, "(devel)" for a local build
	Revision string `json:"revision,omitempty"` // VCS commit
	Time     string `json:"time,omitempty"`     // commit time
	Modified bool   `json:"modified,omitempty"` // built from a tree with changes
	Go       string `json:"go"`
}

func buildInfo() versionInfo {
	v := versionInfo{Version: "unknown"}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return v
	}
	v.Version, v.Go = bi.Main.Version, bi.GoVersion
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			v.Revision = s.Value
		case "vcs.time":
			v.Time = s.Value
		case "vcs.modified":
			v.Modified = s.Value == "true"
		}
	}
	return v
}

// version is the one-line version: "v1.2.3 (commit abcdef012345, go1.26.7)".
func version() string {
	v := buildInfo()
	s := v.Version
	if v.Revision != "" {
		rev := v.Revision
		if len(rev) > 12 {
			rev = rev[:12]
		}
		if v.Modified {
			rev += "+changes"
		}
		s += " (commit " + rev + ", " + v.Go + ")"
	} else if v.Go != "" {
		s += " (" + v.Go + ")"
	}
	return s
}
