package handlers

import (
	"errors"
	"fmt"
)

// Permanent marks err as permanent: the job fails at once, with no retry.
// Permanent(nil) is nil. The result wraps err, so errors.Is/As still see it.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &PermanentError{Err: err}
}

// PermanentError is an error that must not be retried. Make one with
// Permanent.
type PermanentError struct{ Err error }

func (e *PermanentError) Error() string { return e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

// IsPermanent reports whether any error in err's chain is a PermanentError.
func IsPermanent(err error) bool {
	var p *PermanentError
	return errors.As(err, &p)
}

// PanicError is the retryable error a handler's recovered panic becomes.
type PanicError struct {
	Value any    // what was passed to panic
	Stack []byte // the goroutine's stack at the panic
}

func (e *PanicError) Error() string {
	return fmt.Sprintf("handlers: handler panicked: %v", e.Value)
}

// ErrTimeout is wrapped by the error of an attempt that ran past its
// handler's Timeout. It is retryable.
var ErrTimeout = errors.New("handlers: handler timed out")

// ErrDuplicate is returned by Register for a type that is already registered.
var ErrDuplicate = errors.New("handlers: type already registered")

// ErrCancelled is the cause (context.Cause) of a running handler's context
// when its job was cancelled (CancelJob), as opposed to the worker stopping
// or a timeout. A handler that started work elsewhere (a Temporal workflow,
// say) checks errors.Is(context.Cause(ctx), ErrCancelled) to know it must
// cancel that work too rather than leave it for a retry.
var ErrCancelled = errors.New("handlers: job cancelled")
