package main

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// envName is the environment variable that sets a flag not given on the
// command line: --max-core-size reads COREPIPE_MAX_CORE_SIZE.
func envName(flag string) string {
	return "COREPIPE_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// fromEnv fills every flag of cmd not given on the command line from its
// environment variable, so that containers can be configured by
// environment. The command line wins.
func fromEnv(cmd *cobra.Command) error {
	var err error
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if f.Changed || err != nil || f.Name == "help" {
			return
		}
		env := envName(f.Name)
		if v, ok := os.LookupEnv(env); ok {
			if e := cmd.Flags().Set(f.Name, v); e != nil {
				err = &usageError{cmd: cmd, err: fmt.Errorf("invalid %s %q: %s", env, v, want(f, e))}
			}
		}
	})
	return err
}

// flagError turns what pflag says about a command line into one line for
// people; cobra calls it for every parse error.
func flagError(cmd *cobra.Command, err error) error {
	var (
		invalid  *pflag.InvalidValueError
		notExist *pflag.NotExistError
	)
	switch {
	case errors.As(err, &invalid):
		f := invalid.GetFlag()
		name := "--" + f.Name
		if f.Shorthand != "" {
			name = "-" + f.Shorthand
		}
		err = fmt.Errorf("invalid %s %q: %s", name, invalid.GetValue(), want(f, invalid))
	case errors.As(err, &notExist) && notExist.GetSpecifiedShortnames() != "":
		// The standard flag package, and so corepipe before, took -exe
		// for --exe.
		if long := notExist.GetSpecifiedShortnames(); cmd.Flags().Lookup(long) != nil {
			err = fmt.Errorf("unknown flag -%s: long flags take two dashes, --%s", long, long)
		}
	}
	return &usageError{cmd: cmd, err: err}
}

// want says what a flag takes, in place of a strconv error.
func want(f *pflag.Flag, err error) string {
	switch f.Value.Type() {
	case "int", "int64", "uint", "uint64":
		return "want a whole number"
	case "duration":
		return "want a duration like 30s, 10m or 2h"
	case "bool":
		return "want true or false"
	}
	if cause := errors.Unwrap(err); cause != nil {
		return cause.Error()
	}
	return err.Error()
}

// oneOf is a flag that takes one of a few words, and completes them.
type oneOf struct {
	value   *string
	allowed []string
}

func (o *oneOf) String() string { return *o.value }

func (o *oneOf) Set(s string) error {
	if !slices.Contains(o.allowed, s) {
		return fmt.Errorf("want %s", strings.Join(o.allowed, " or "))
	}
	*o.value = s
	return nil
}

func (o *oneOf) Type() string { return strings.Join(o.allowed, "|") }

// choiceVarP declares a oneOf flag on cmd with the first word as its default.
func choiceVarP(cmd *cobra.Command, p *string, name, shorthand, usage string, allowed ...string) {
	*p = allowed[0]
	cmd.Flags().VarP(&oneOf{value: p, allowed: allowed}, name, shorthand, usage)
	cmd.RegisterFlagCompletionFunc(name, cobra.FixedCompletions(allowed, cobra.ShellCompDirectiveNoFileComp))
}
