// Command wordcount is the worked example of courier in your own service:
// it defines its own job type (proto/wordcount/v1/wordcount.proto, Go code
// generated into wordcountpb), registers a handler for it, runs a courier
// Node on the embedded defaults (courier's Pub/Sub emulator in the process,
// a SQLite job store in a temporary folder), enqueues one job through the
// typed Go client, waits for it and prints the decoded result.
//
//	go run ./examples/wordcount "the quick brown fox"
//
// Copy it: your handler, your proto, the same dozen lines of courier.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/courierq/courier"
	"github.com/courierq/courier/client"
	"github.com/courierq/courier/config"
	"github.com/courierq/courier/examples/wordcount/wordcountpb"
	"github.com/courierq/courier/handlers"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	text := strings.Join(os.Args[1:], " ")
	if text == "" {
		text = "courier runs protobuf jobs over Pub/Sub"
	}
	if err := run(ctx, text, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "wordcount:", err)
		os.Exit(1)
	}
}

// count is the handler: a plain function of the typed job.
func count(ctx context.Context, job *handlers.Job[*wordcountpb.Count]) (*wordcountpb.CountResult, error) {
	words := strings.Fields(job.Payload.GetText())
	if len(words) == 0 {
		return nil, handlers.Permanent(errors.New("wordcount: the text has no words"))
	}
	res := &wordcountpb.CountResult{Words: int32(len(words))}
	for _, w := range words {
		if len(w) > len(res.Longest) {
			res.Longest = w
		}
	}
	return res, nil
}

func run(ctx context.Context, text string, out io.Writer) error {
	// 1. Register your handler types.
	reg := handlers.NewRegistry()
	if err := handlers.Register(reg, count, handlers.Config{RatePerSecond: 100, Timeout: 10 * time.Second}); err != nil {
		return err
	}

	// 2. Run a Node: here the embedded defaults, on free loopback ports.
	dir, err := os.MkdirTemp("", "wordcount-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	cfg := &config.Config{
		PubSub: config.PubSub{Emulator: "embedded"},
		Store:  config.Store{Path: dir + "/jobs.db"},
		HTTP:   config.HTTP{Addr: "-"},
	}
	cfg.GRPC.Addr, cfg.GRPC.DevMode = "127.0.0.1:0", true // loopback, no auth
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	node, err := courier.New(cfg, courier.WithRegistry(reg), courier.WithLogger(quiet))
	if err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- node.Run(ctx) }()
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		node.Shutdown(sctx)
		<-done
	}()
	select {
	case <-node.Ready():
	case err := <-done:
		return err
	}

	// 3. Enqueue through the typed client and wait for the result.
	conn, err := client.Dial(node.GRPCAddr(), client.Config{})
	if err != nil {
		return err
	}
	defer conn.Close()
	jobs := client.NewJobs(conn)
	id, err := jobs.Enqueue(ctx, &wordcountpb.Count{Text: text}, client.EnqueueOptions{})
	if err != nil {
		return err
	}
	var res wordcountpb.CountResult
	job, err := jobs.Wait(ctx, id, &res)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "job %s %s: %d words, the longest is %q\n", job.GetId(), job.GetState(), res.GetWords(), res.GetLongest())
	return nil
}
