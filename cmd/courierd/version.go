package main

import (
	"fmt"
	"runtime/debug"
	"strings"
)

// version describes this build from the module and VCS information that
// the Go toolchain stamps into the binary (runtime/debug.ReadBuildInfo).
func version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "courierd (no build information: built without module support)"
	}
	set := map[string]string{}
	for _, s := range bi.Settings {
		set[s.Key] = s.Value
	}
	var b strings.Builder
	fmt.Fprintf(&b, "courierd %s\n", bi.Main.Version)
	fmt.Fprintf(&b, "module   %s\n", bi.Main.Path)
	fmt.Fprintf(&b, "go       %s %s/%s", bi.GoVersion, set["GOOS"], set["GOARCH"])
	if set["CGO_ENABLED"] != "" {
		fmt.Fprintf(&b, " CGO_ENABLED=%s", set["CGO_ENABLED"])
	}
	b.WriteString("\n")
	if rev := set["vcs.revision"]; rev != "" {
		fmt.Fprintf(&b, "vcs      %s %s", set["vcs"], rev)
		if t := set["vcs.time"]; t != "" {
			fmt.Fprintf(&b, " (%s)", t)
		}
		if set["vcs.modified"] == "true" {
			b.WriteString(" with uncommitted changes")
		}
	} else {
		b.WriteString("vcs      none stamped (built outside a repository, or with -buildvcs=false)")
	}
	return b.String()
}

// shortVersion is the module version and revision, for the log.
func shortVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := bi.Main.Version
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			v += " " + s.Value[:12]
		}
	}
	return v
}
