package courier

import (
	"io"
	"log/slog"

	"github.com/courierq/courier/config"
)

// NewLogger makes the logger that a config's log section describes,
// writing to w: slog's text lines (format "text", the default), or JSON
// lines (format "json") with the field names Google Cloud Logging reads
// from a container's output: "severity" (DEBUG, INFO, WARNING, ERROR),
// "message" and "time", so that Cloud Run and GKE show levels and messages
// as such. Pass it to New with WithLogger.
func NewLogger(w io.Writer, c config.Log) (*slog.Logger, error) {
	var level slog.Level
	if c.Level != "" {
		if err := level.UnmarshalText([]byte(c.Level)); err != nil {
			return nil, &config.ValidationError{Field: "log.level", Value: c.Level, Fix: `use "debug", "info" (the default), "warn" or "error"`}
		}
	}
	switch c.Format {
	case "", "text":
		return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level})), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level, ReplaceAttr: cloudLogging})), nil
	}
	return nil, &config.ValidationError{Field: "log.format", Value: c.Format, Fix: `use "text" (the default) or "json"`}
}

// cloudLogging renames slog's level and message to Cloud Logging's
// severity and message.
func cloudLogging(groups []string, a slog.Attr) slog.Attr {
	if len(groups) > 0 {
		return a
	}
	switch a.Key {
	case slog.LevelKey:
		l, _ := a.Value.Any().(slog.Level)
		return slog.String("severity", severity(l))
	case slog.MessageKey:
		a.Key = "message"
	}
	return a
}

// severity is Cloud Logging's name of a slog level.
func severity(l slog.Level) string {
	switch {
	case l < slog.LevelInfo:
		return "DEBUG"
	case l < slog.LevelWarn:
		return "INFO"
	case l < slog.LevelError:
		return "WARNING"
	}
	return "ERROR"
}
