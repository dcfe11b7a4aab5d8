package slack

import (
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"

	"github.com/corepipe/corepipe"
)

// Mentions maps the owners of crash groups, as corepipe names them (the
// assignee, the owners rules' OWNER), to the Slack user (U…, W…) or user
// group (S…) an alert about their groups mentions.
type Mentions map[string]string

// slackID is a member or user group ID as Slack prints it.
var slackID = regexp.MustCompile(`^[UWS][A-Z0-9]{2,20}$`)

// maxMentions bounds a mentions file.
const maxMentions = 10000

// ParseMentions reads a mentions file: one "OWNER SLACK-ID" a line, #
// comments.
func ParseMentions(r io.Reader) (Mentions, error) {
	m := Mentions{}
	err := corepipe.EachRule(r, func(n int, fields []string) error {
		if len(fields) != 2 || !slackID.MatchString(fields[1]) {
			return fmt.Errorf("%w: mentions line %d: want \"OWNER SLACK-ID\", the ID of a user (U…, W…) or a user group (S…)", corepipe.ErrInvalid, n)
		}
		if len(m) == maxMentions {
			return fmt.Errorf("%w: mentions: more than %d lines", corepipe.ErrInvalid, maxMentions)
		}
		m[fields[0]] = fields[1]
		return nil
	})
	switch {
	case errors.Is(err, corepipe.ErrInvalid):
		return nil, err
	case err != nil:
		return nil, fmt.Errorf("mentions: %w", err)
	}
	return m, nil
}

// owner is an alert's Owner field. It is plain text, so that an owner
// named "@here" pings nobody, unless the operator's mentions name the
// owner's Slack user or user group, which the field then mentions.
func (rd renderer) owner(name string) *textObj {
	if name == "" {
		return nil
	}
	id, ok := rd.mentions[name]
	if !ok {
		return plain("Owner: "+name, maxField)
	}
	mention := "<@" + id + ">"
	if strings.HasPrefix(id, "S") {
		mention = "<!subteam^" + id + ">"
	}
	return mrkdwn(fit("Owner: "+mention+" ("+escape(name)+")", maxField))
}
