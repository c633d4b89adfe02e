package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

// subcommands lists the commands, in help order. A new command is a file
// with its newXCommand and one line here.
var subcommands = []func(*globals) *cobra.Command{
	newEnqueueCommand,
	newGetCommand,
	newWatchCommand,
	newCancelCommand,
	newListCommand,
	newStatsCommand,
	newDeadLettersCommand,
	newVersionCommand,
}

// newRoot builds the command tree; the global flags and settings live in g.
func newRoot(g *globals) *cobra.Command {
	root := &cobra.Command{
		Use:   "courier",
		Short: "courier is the command-line client of courier's JobService",
		Long: `courier enqueues jobs and follows them through courierd's gRPC JobService:

  courier [--addr HOST:PORT] [-o text|json] enqueue TYPE JSON [--key K] [--wait] [--label k=v]
  courier get ID | watch ID | cancel ID
  courier list [--state S] [--type T] [--label k=v] [--limit N]
  courier stats [--type T]
  courier dead-letters list [--type T] | show SUB/ID | replay SUB/ID... | replay --type T
  courier version | completion bash|zsh|fish|powershell

Message types come from the server through gRPC server reflection: any type
courierd knows can be enqueued and shown, e.g.
  courier enqueue courier.demo.v1.Echo '{"message":"hi"}' --wait

Settings, first found wins: flags; the environment (COURIER_ADDR,
COURIER_TOKEN, COURIER_PROFILE, COURIER_CONFIG); the profile file
(--config, $COURIER_CONFIG, or ` + "`$XDG_CONFIG_HOME/courier/config.yaml`" + `):

  profile: local             # used when --profile and $COURIER_PROFILE are unset
  profiles:
    local: {addr: 127.0.0.1:8005}
    prod:
      addr: courier.example.com:8005
      caFile: ca.pem          # relative to the file's folder; implies TLS
      certFile: me.pem        # client certificate for mTLS
      keyFile: me-key.pem
      tokenFile: ~/.config/courier/prod.token
      output: json

Exit status: 0 on success; 1 on errors; 3 when a waited-for job FAILED;
4 when it was CANCELLED.`,
		Version:           version(),
		SilenceErrors:     true, // main prints the error once, with a hint
		SilenceUsage:      true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error { return g.settle(cmd) },
	}
	root.SetVersionTemplate("courier {{.Version}}\n")
	g.flags(root)
	for _, newCmd := range subcommands {
		root.AddCommand(newCmd(g))
	}
	return root
}

// args accepts exactly n positional arguments, and says what they are
// (what, e.g. "one job ID") when it gets another number.
func args(n int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return fmt.Errorf("%s takes %s, and got %d arguments; see courier %s --help", cmd.Name(), what, len(args), cmd.Name())
		}
		return nil
	}
}
