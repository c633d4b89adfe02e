package emulator

import (
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Resource names follow the real service: projects/{project}/{kind}/{id},
// where id starts with a letter, is 3 to 255 characters of letters, digits,
// "-", "_", ".", "~", "+" or "%", and does not start with "goog".

// validID reports whether id is a valid topic, subscription or snapshot ID.
func validID(id string) bool {
	if len(id) < 3 || len(id) > 255 || strings.HasPrefix(strings.ToLower(id), "goog") {
		return false
	}
	c := id[0]
	if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
		return false
	}
	for i := 1; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("-_.~+%", c) >= 0:
		default:
			return false
		}
	}
	return true
}

func validProject(p string) bool {
	return p != "" && !strings.ContainsAny(p, "/ ")
}

// parseName splits projects/{project}/{kind}/{id} and validates it. kind is
// "topics", "subscriptions" or "snapshots".
func parseName(name, kind string) (project, id string, err error) {
	parts := strings.Split(name, "/")
	if len(parts) != 4 || parts[0] != "projects" || parts[2] != kind || !validProject(parts[1]) || !validID(parts[3]) {
		return "", "", status.Errorf(codes.InvalidArgument, "Invalid [%s] name: (name=%s)", kind, name)
	}
	return parts[1], parts[3], nil
}

// parseProject validates projects/{project}.
func parseProject(name string) (string, error) {
	p, ok := strings.CutPrefix(name, "projects/")
	if !ok || !validProject(p) {
		return "", status.Errorf(codes.InvalidArgument, "Invalid [projects] name: (name=%s)", name)
	}
	return p, nil
}

func errTopicNotFound(name string) error {
	return status.Errorf(codes.NotFound, "Topic not found (resource=%s).", name)
}

func errSubNotFound(name string) error {
	return status.Errorf(codes.NotFound, "Subscription does not exist (resource=%s).", name)
}

func errSnapshotNotFound(name string) error {
	return status.Errorf(codes.NotFound, "Snapshot does not exist (resource=%s).", name)
}

// deletedTopic is what a subscription's topic reads after its topic is deleted.
const deletedTopic = "_deleted-topic_"
