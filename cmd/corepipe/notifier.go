package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/notify"
	"github.com/corepipe/corepipe/notify/slack"
	natsq "github.com/corepipe/corepipe/queue/nats"
	"github.com/corepipe/corepipe/sqlite"
)

// notifierFlags are the notifier's flags, shared by `corepipe notifier` and
// `corepipe dev`.
type notifierFlags struct {
	webhook string
	token   string
	channel string
	uiURL   string
	// mentions is the file naming the Slack users and groups of owners.
	mentions string
	policy   notify.Policy
	// owners name the owners of groups nobody assigned: the notifier's
	// --owners, or dev's API's.
	owners *corepipe.OwnerRules
}

func notifierFlagsOf(fset *pflag.FlagSet) *notifierFlags {
	f := &notifierFlags{}
	d := notify.DefaultPolicy
	// The secrets are better given by environment than on a command line
	// that ps shows to every user of the machine.
	fset.StringVar(&f.webhook, "slack-webhook", "", "Slack incoming-webhook URL; a secret, better set as COREPIPE_SLACK_WEBHOOK")
	fset.StringVar(&f.token, "slack-token", "", "Slack bot token (chat:write) instead of a webhook, to thread follow-ups; a secret, better set as COREPIPE_SLACK_TOKEN")
	fset.StringVar(&f.channel, "slack-channel", "", "channel ID or name to post in with --slack-token")
	fset.StringVar(&f.uiURL, "ui-url", "", "base URL of the web UI, for links in messages")
	fset.StringVar(&f.mentions, "slack-mentions", "", "`file` of \"OWNER SLACK-ID\" lines: alerts mention the Slack user (U…) or user group (S…) of a group's owner instead of naming it")
	fset.DurationVar(&f.policy.Cooldown, "notify-cooldown", d.Cooldown, "after a message about a crash group, hold back further alerts about it this long")
	fset.IntVar(&f.policy.SpikeCount, "notify-spike-count", d.SpikeCount, "alert when a group crashes more than this many times within --notify-spike-window (-1: never)")
	fset.DurationVar(&f.policy.SpikeWindow, "notify-spike-window", d.SpikeWindow, "window of --notify-spike-count")
	fset.DurationVar(&f.policy.DigestInterval, "notify-digest-interval", d.DigestInterval, "how often crashes not announced on their own are summarised")
	fset.DurationVar(&f.policy.MaxAge, "notify-max-age", d.MaxAge, "crashes captured longer ago than this count towards their groups but are not announced")
	return f
}

func (f *notifierFlags) enabled() bool { return f.webhook != "" || f.token != "" }

// slack is the Slack client's configuration the flags give.
func (f *notifierFlags) slack(log *slog.Logger, reg prometheus.Registerer) (slack.Config, error) {
	cfg := slack.Config{WebhookURL: f.webhook, Token: f.token, Channel: f.channel, UIURL: f.uiURL, Logger: log, Registerer: reg}
	if f.mentions != "" {
		var err error
		if cfg.Mentions, err = parseFile("--slack-mentions", f.mentions, slack.ParseMentions); err != nil {
			return cfg, err
		}
	}
	return cfg, nil
}

// notifierCmdFlags are `corepipe notifier`'s own flags, beside the ones it
// shares with dev.
type notifierCmdFlags struct {
	nats          *natsFlags
	state         string
	durable       string
	metricsListen string
	index         string
	ownersFile    string
}

func notifierCmd(log *slog.Logger) *cobra.Command {
	var f notifierCmdFlags
	var nf *notifierFlags
	cmd := &cobra.Command{
		Use:   "notifier",
		Short: "tell Slack about new, regressed and spiking crash groups",
		Long: `Follow the reports stream and tell Slack about a new crash group, a regressed
one, or a spike, once per group per cool-down; everything else goes into
thread replies (with a bot token) or a digest. Decisions and unsent messages
live in the --state file, so that a restart neither repeats nor loses one.
Run one replica.`,
		Example: `  COREPIPE_SLACK_WEBHOOK=https://hooks.slack.com/services/... \
    corepipe notifier --nats nats://127.0.0.1:4222 --state /data/notifier.db --ui-url https://crashes.example.com
  COREPIPE_SLACK_TOKEN=xoxb-... corepipe notifier --slack-channel C0123456 --nats nats://nats:4222 --state notifier.db`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runNotifier(cmd.Context(), log, f, nf)
		},
	}
	fset := cmd.Flags()
	f.nats = natsFlagsOf(fset)
	fset.StringVar(&f.state, "state", "", "SQLite `file` of the notifier's groups, handled crashes and unsent messages (required; keep it on a persistent volume)")
	fset.StringVar(&f.durable, "durable", "notifier", "`name` of the notifier's position in the reports stream")
	fset.StringVar(&f.metricsListen, "metrics-listen", "", "`address` to serve /metrics and /healthz on (default: none)")
	fset.StringVar(&f.index, "index", "", "the API's SQLite index `file` (its --db), read for triage: ignored groups stay silent, resolved ones speak when they regress (default: no triage)")
	fset.StringVar(&f.ownersFile, "owners", "", "`file` of \"PATTERN OWNER\" rules naming the owner of groups nobody assigned, the API's --owners (see the README)")
	nf = notifierFlagsOf(fset)
	cmd.MarkFlagFilename("index")
	cmd.MarkFlagFilename("owners")
	cmd.MarkFlagFilename("state")
	return cmd
}

func runNotifier(ctx context.Context, log *slog.Logger, f notifierCmdFlags, nf *notifierFlags) error {
	switch {
	case f.nats.url == "":
		return errors.New("--nats is required")
	case f.state == "":
		return errors.New("--state is required: without it every restart would announce every crash again")
	case !nf.enabled():
		return errors.New("--slack-webhook, or --slack-token and --slack-channel, is required")
	}
	if f.ownersFile != "" {
		var err error
		if nf.owners, err = parseFile("--owners", f.ownersFile, corepipe.ParseOwners); err != nil {
			return err
		}
	}
	q, err := natsq.Open(ctx, f.nats.url, append(f.nats.options(), natsq.RetryOnFailedConnect(true), natsq.Name("corepipe-notifier"),
		natsq.Logger(log.With("part", "nats")))...)
	if err != nil {
		return err
	}
	defer q.Close(context.Background())
	reg := newRegistry()
	var triage notify.TriageSource
	if f.index != "" {
		idx, err := sqlite.Open(f.index)
		if err != nil {
			return err
		}
		defer idx.Close()
		triage = idx
	}
	part, err := notifierPart(log, nf, q, f.state, f.durable, triage, reg)
	if err != nil {
		return err
	}
	return runAll(ctx, part, func(ctx context.Context) error { return serveMetrics(ctx, f.metricsListen, reg) })
}

// notifierPart announces crashes from the reports stream to Slack. triage
// and reg may be nil.
func notifierPart(log *slog.Logger, f *notifierFlags, q reportsQueue, statePath, durable string, triage notify.TriageSource, reg prometheus.Registerer) (func(context.Context) error, error) {
	log = log.With("part", "notifier")
	cfg, err := f.slack(log, reg)
	if err != nil {
		return nil, err
	}
	sender, err := slack.New(cfg)
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context) error {
		cons, err := q.Reports(ctx, durable)
		if err != nil {
			return fmt.Errorf("notifier: %w", err)
		}
		store, err := sqlite.OpenNotifyStore(statePath)
		if err != nil {
			return err
		}
		n, err := notify.Open(notify.Config{
			Consumer:   cons,
			Sender:     sender,
			Store:      store,
			Triage:     triage,
			Owners:     f.owners,
			Policy:     f.policy,
			Logger:     log,
			Registerer: reg,
		})
		if err != nil {
			return err
		}
		defer n.Close()
		log.Info("notifier running", "to", cfg, "state", statePath)
		return n.Run(ctx)
	}, nil
}

// devNotifier is the notifier of `corepipe dev`: its state under the data
// directory, links to dev's own UI unless --ui-url says otherwise, metrics
// on the API's /metrics. Without Slack settings it is a part that does
// nothing.
func devNotifier(log *slog.Logger, f *notifierFlags, q reportsQueue, dataDir, uiAddr string, triage notify.TriageSource, reg prometheus.Registerer) (func(context.Context) error, error) {
	if !f.enabled() {
		return func(ctx context.Context) error { <-ctx.Done(); return nil }, nil
	}
	if f.uiURL == "" {
		f.uiURL = "http://" + uiAddr
	}
	return notifierPart(log, f, q, filepath.Join(dataDir, "notifier.db"), "notifier", triage, reg)
}
