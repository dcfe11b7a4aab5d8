// Package slack delivers notify messages to Slack as Block Kit messages,
// through an incoming webhook or, with a bot token, chat.postMessage, which
// lets follow-ups go into the thread of the alert they follow.
//
// It keeps to Slack's rate limit of about one message per second, waits
// out a 429's Retry-After, and retries server and network errors with
// backoff until the message is accepted or refused for good. A refused
// destination (a revoked webhook or token, an unknown channel) is retried
// too, slowly: the messages wait for the fix rather than being lost. The webhook
// URL and the token are secrets: they appear in no error and no log line.
package slack

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/corepipe/corepipe"
	"github.com/corepipe/corepipe/internal/promreg"
	"github.com/corepipe/corepipe/internal/settings"
	"github.com/corepipe/corepipe/notify"
)

// DefaultAPIURL is Slack's Web API.
const DefaultAPIURL = "https://slack.com/api"

// Config configures a Client: a WebhookURL, or a Token and a Channel.
type Config struct {
	// WebhookURL is an incoming webhook's URL. Secret.
	WebhookURL string
	// Token is a bot token (xoxb-…) with chat:write; Channel the channel
	// ID or name to post in. The token is secret.
	Token   string
	Channel string
	// APIURL is the Web API's base URL; default DefaultAPIURL.
	APIURL string
	// UIURL is the base URL of corepipe's web UI, for links; "" for none.
	UIURL string
	// Mentions are the Slack users and groups alerts mention as owners;
	// without one, an owner is named as text.
	Mentions Mentions
	// MinInterval is the least time between two messages; default 1s,
	// Slack's limit per webhook and per channel.
	MinInterval time.Duration
	// HTTPClient defaults to one with a 30s timeout.
	HTTPClient *http.Client
	// Logger receives retries; nil discards them.
	Logger *slog.Logger
	// Registerer receives the request metrics; nil registers none.
	Registerer prometheus.Registerer
}

// String describes the destination without its secrets.
func (c Config) String() string {
	if c.Token != "" {
		return "slack bot (channel " + c.Channel + ")"
	}
	return "slack webhook"
}

// LogValue keeps the secrets out of structured logs too.
func (c Config) LogValue() slog.Value { return slog.StringValue(c.String()) }

// Client is a notify.Sender to Slack.
type Client struct {
	endpoint string
	token    string
	channel  string
	secrets  []string
	rd       renderer
	http     *http.Client
	log      *slog.Logger
	interval time.Duration
	requests *prometheus.CounterVec

	// now and sleep are the clock; tests replace them.
	now   func() time.Time
	sleep func(ctx context.Context, d time.Duration) error

	mu   sync.Mutex
	next time.Time // no request before this
}

var _ notify.Sender = (*Client)(nil)

// Retry backoff for server and network errors.
const (
	minBackoff = time.Second
	maxBackoff = time.Minute
	// maxRetryAfter bounds a Retry-After: a broken proxy must not park the
	// notifier for a day.
	maxRetryAfter = 10 * time.Minute
)

// New checks cfg and returns a Client.
func New(cfg Config) (*Client, error) {
	c := &Client{
		token:    cfg.Token,
		channel:  cfg.Channel,
		http:     cfg.HTTPClient,
		log:      cfg.Logger,
		interval: cfg.MinInterval,
		now:      time.Now,
		sleep:    sleep,
	}
	switch {
	case cfg.WebhookURL != "" && cfg.Token != "":
		return nil, errors.New("slack: give a webhook URL or a bot token, not both")
	case cfg.WebhookURL != "":
		u, err := url.Parse(cfg.WebhookURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			// The URL itself stays out of the error: it is the secret.
			return nil, errors.New("slack: the webhook URL is not an http(s) URL")
		}
		c.endpoint = cfg.WebhookURL
		c.secrets = []string{cfg.WebhookURL, u.Path}
	case cfg.Token != "":
		if cfg.Channel == "" {
			return nil, errors.New("slack: a bot token needs a channel")
		}
		api := cfg.APIURL
		if api == "" {
			api = DefaultAPIURL
		}
		c.endpoint = strings.TrimSuffix(api, "/") + "/chat.postMessage"
		c.secrets = []string{cfg.Token}
	default:
		return nil, errors.New("slack: no webhook URL and no bot token")
	}
	if cfg.UIURL != "" {
		u, err := url.Parse(cfg.UIURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || strings.ContainsAny(cfg.UIURL, "|<> \t\n") {
			return nil, fmt.Errorf("slack: UI URL %q: want an http(s) URL", cfg.UIURL)
		}
		c.rd.ui = strings.TrimSuffix(cfg.UIURL, "/")
	}
	for owner, id := range cfg.Mentions {
		if !slackID.MatchString(id) {
			return nil, fmt.Errorf("slack: mention of %q: %q is not the ID of a Slack user or user group", corepipe.Clip(owner, 64), corepipe.Clip(id, 64))
		}
	}
	c.rd.mentions = cfg.Mentions
	if c.http == nil {
		c.http = &http.Client{Timeout: 30 * time.Second}
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	settings.Default(&c.interval, time.Second)
	f, registered := promreg.Factory(cfg.Registerer)
	c.requests = f.NewCounterVec(prometheus.CounterOpts{
		Name: "corepipe_slack_requests_total",
		Help: "Requests to Slack by result: ok, rate_limited, server_error, network_error, rejected (the message), misconfigured (the webhook, token or channel).",
	}, []string{"result"})
	if err := registered(); err != nil {
		return nil, fmt.Errorf("slack: register metrics: %w", err)
	}
	return c, nil
}

// Threads reports whether follow-ups can go in threads: only the Web API
// returns the message's ts, which a thread needs.
func (c *Client) Threads() bool { return c.token != "" }

// Send renders m and posts it. It returns the new message's ts (bot only)
// as the thread for replies.
func (c *Client) Send(ctx context.Context, m *notify.Message) (string, error) {
	p, err := c.rd.render(m)
	if err != nil {
		return "", fmt.Errorf("slack: %w", err)
	}
	if c.token != "" {
		p.Channel, p.ThreadTS = c.channel, m.Thread
	}
	body, err := json.Marshal(p)
	if err != nil {
		return "", fmt.Errorf("slack: encode message: %w", err)
	}
	backoff := minBackoff
	for {
		if err := c.waitTurn(ctx); err != nil {
			return "", fmt.Errorf("slack: %w", err)
		}
		res := c.post(ctx, body)
		c.requests.WithLabelValues(res.result).Inc()
		var wait time.Duration
		switch res.result {
		case resultOK:
			return res.ts, nil
		case resultRejected:
			return "", fmt.Errorf("slack: %w: message refused: %s", corepipe.ErrInvalid, res.detail)
		case resultRateLimited:
			wait = res.retryAfter
		case resultMisconfigured:
			// Every message would fail the same way until someone fixes
			// the webhook, token or channel: keep them all for then.
			wait = maxBackoff
			c.log.Error("slack refuses the destination; messages wait until it is fixed", "detail", res.detail, "retry_in", wait)
			c.delay(wait)
			continue
		default:
			if ctx.Err() != nil {
				return "", fmt.Errorf("slack: %w", ctx.Err())
			}
			wait = backoff + rand.N(backoff/4+1)
			backoff = min(2*backoff, maxBackoff)
		}
		c.log.Warn("slack delivery failed, retrying", "result", res.result, "detail", res.detail, "retry_in", wait)
		c.delay(wait)
	}
}

// waitTurn sleeps until the rate limit allows the next request.
func (c *Client) waitTurn(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if d := c.next.Sub(c.now()); d > 0 {
		if err := c.sleep(ctx, d); err != nil {
			return err
		}
	}
	c.next = c.now().Add(c.interval)
	return nil
}

// delay holds the next request back by at least d.
func (c *Client) delay(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t := c.now().Add(d); t.After(c.next) {
		c.next = t
	}
}

// Request results, the label of corepipe_slack_requests_total.
const (
	resultOK          = "ok"
	resultRateLimited = "rate_limited"
	resultServerError = "server_error"
	resultNetwork     = "network_error"
	resultRejected    = "rejected"
	// resultMisconfigured is a refusal of the destination rather than of
	// the message: a revoked webhook or token, a missing channel.
	resultMisconfigured = "misconfigured"
)

type result struct {
	result     string
	detail     string
	ts         string
	retryAfter time.Duration
}

// destinationAPIErrors are the Web API's refusals of the token or channel.
var destinationAPIErrors = map[string]bool{
	"invalid_auth":            true,
	"not_authed":              true,
	"token_revoked":           true,
	"token_expired":           true,
	"account_inactive":        true,
	"missing_scope":           true,
	"no_permission":           true,
	"team_access_not_granted": true,
	"channel_not_found":       true,
	"not_in_channel":          true,
	"is_archived":             true,
	"restricted_action":       true,
}

// transientAPIErrors are the Web API's errors worth retrying.
var transientAPIErrors = map[string]bool{
	"internal_error":      true,
	"fatal_error":         true,
	"service_unavailable": true,
	"request_timeout":     true,
	"ratelimited":         true,
}

func (c *Client) post(ctx context.Context, body []byte) result {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.endpoint, bytes.NewReader(body))
	if err != nil {
		return result{result: resultRejected, detail: c.redact(err)}
	}
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return result{result: resultNetwork, detail: c.redact(err)}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return result{result: resultNetwork, detail: c.redact(err)}
	}
	status := fmt.Sprintf("HTTP %d: %s", resp.StatusCode, c.redact(errors.New(snippet(data))))
	switch {
	case resp.StatusCode == http.StatusTooManyRequests:
		return result{result: resultRateLimited, detail: status, retryAfter: retryAfter(resp.Header.Get("Retry-After"), c.now())}
	case resp.StatusCode >= 500:
		return result{result: resultServerError, detail: status}
	case resp.StatusCode == http.StatusUnauthorized, resp.StatusCode == http.StatusForbidden,
		resp.StatusCode == http.StatusNotFound, resp.StatusCode == http.StatusGone:
		// A webhook that was removed or whose channel was archived.
		return result{result: resultMisconfigured, detail: status}
	case resp.StatusCode >= 300:
		return result{result: resultRejected, detail: status}
	case c.token == "":
		return result{result: resultOK}
	}
	var api struct {
		OK    bool   `json:"ok"`
		Error string `json:"error"`
		TS    string `json:"ts"`
	}
	if err := json.Unmarshal(data, &api); err != nil {
		return result{result: resultServerError, detail: "unreadable answer: " + status}
	}
	switch {
	case api.OK:
		return result{result: resultOK, ts: api.TS}
	case api.Error == "ratelimited":
		return result{result: resultRateLimited, detail: api.Error, retryAfter: retryAfter(resp.Header.Get("Retry-After"), c.now())}
	case transientAPIErrors[api.Error]:
		return result{result: resultServerError, detail: api.Error}
	case destinationAPIErrors[api.Error]:
		return result{result: resultMisconfigured, detail: api.Error}
	}
	return result{result: resultRejected, detail: c.redact(errors.New(api.Error))}
}

// redact describes err without the secrets: net/http's errors quote the
// request URL, which for a webhook is the secret itself.
func (c *Client) redact(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	s := err.Error()
	for _, secret := range c.secrets {
		if secret != "" && secret != "/" {
			s = strings.ReplaceAll(s, secret, "[redacted]")
		}
	}
	return s
}

func snippet(data []byte) string {
	s := strings.TrimSpace(string(data))
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return strings.ToValidUTF8(s, "?")
}

// retryAfter reads a Retry-After header, in seconds or as an HTTP date; a
// missing or unreadable one waits a second.
func retryAfter(v string, now time.Time) time.Duration {
	d := time.Second
	if secs, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && secs >= 0 {
		d = time.Duration(secs) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	return min(max(d, 0), maxRetryAfter)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
