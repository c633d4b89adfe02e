package wire

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// ErrInvalidID is wrapped by the errors of ValidateID, and so of
// Naming.Topic and of publishing a type whose topic ID Pub/Sub would refuse:
// no retry can fix those, only a change of naming.
var ErrInvalidID = errors.New("wire: invalid Pub/Sub ID")

// idError is an error of ValidateID: its message says what is wrong; it
// matches ErrInvalidID.
type idError struct{ msg string }

func (e *idError) Error() string        { return e.msg }
func (e *idError) Is(target error) bool { return target == ErrInvalidID }

// Naming maps protobuf message types to Pub/Sub topic IDs. The zero value
// applies the default rule to every type.
//
// The default rule: Prefix, then the full protobuf name with each "." replaced
// by "-", e.g. courier.demo.v1.Echo → "courier-demo-v1-Echo". Protobuf names
// contain only letters, digits, "_" and ".", so the rule never maps two types
// to one topic, and the result is a valid topic ID unless it starts with
// "goog" (reserved by Pub/Sub: set Prefix or an override for google.* types)
// or is longer than 255 characters.
type Naming struct {
	// Prefix is prepended to names made by the default rule (not to
	// overrides), e.g. "staging-". "" means none.
	Prefix string
	// Topics maps full protobuf names to topic IDs, overriding the rule.
	Topics map[string]string
}

// topicIDPattern is Pub/Sub's rule for topic and subscription IDs.
var topicIDPattern = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9\-_.~+%]{2,254}$`)

// Topic returns the topic ID of messages of the full protobuf name typ, or an
// error saying why the name is not a valid topic ID.
func (n Naming) Topic(typ string) (string, error) {
	if id, ok := n.Topics[typ]; ok {
		return id, ValidateID(id)
	}
	id := n.Prefix + strings.ReplaceAll(typ, ".", "-")
	if err := ValidateID(id); err != nil {
		return "", fmt.Errorf("%w; set Naming.Prefix or add %q to Naming.Topics", err, typ)
	}
	return id, nil
}

// ValidateID reports whether id is a valid Pub/Sub topic or subscription ID:
// 3..255 characters of letters, digits and -_.~+%, starting with a letter and
// not with "goog".
func ValidateID(id string) error {
	if !topicIDPattern.MatchString(id) {
		return &idError{fmt.Sprintf("wire: %q is not a valid Pub/Sub ID: it must be 3..255 characters of letters, digits and -_.~+%%, starting with a letter", id)}
	}
	if strings.HasPrefix(strings.ToLower(id), "goog") {
		return &idError{fmt.Sprintf("wire: %q is not a valid Pub/Sub ID: IDs must not start with \"goog\"", id)}
	}
	return nil
}
