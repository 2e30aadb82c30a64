package main

import (
	"context"
	"flag"
	"io"

	"github.com/berthhq/berth/control/client"
	"github.com/berthhq/berth/control/wire"
	"github.com/berthhq/berth/internal/cli"
)

func (h *hostsCmd) pinFlags(fs *flag.FlagSet) {
	fs.StringVar(&h.pin.Engine, "engine", "", "pin the engine to `VERSION`")
	fs.StringVar(&h.pin.Agent, "agent", "", "pin the agent to `VERSION`")
}

func (h *hostsCmd) unpinFlags(fs *flag.FlagSet) {
	fs.BoolVar(&h.unpinEngine, "engine", false, "remove only the engine's pin")
	fs.BoolVar(&h.unpinAgent, "agent", false, "remove only the agent's pin")
}

// pinHost is berth-control hosts pin ID --engine V|--agent V.
func (h *hostsCmd) pinHost(ctx context.Context, in *cli.Invocation) error {
	if h.pin.Engine == "" && h.pin.Agent == "" {
		return cli.Usagef("hosts pin needs --engine VERSION or --agent VERSION (or both)")
	}
	for flag, v := range map[string]string{"--engine": h.pin.Engine, "--agent": h.pin.Agent} {
		if v == "" {
			continue
		}
		if err := wire.CheckVersion(v); err != nil {
			return cli.Usagef("%s: %v", flag, err)
		}
	}
	c, err := h.connect(in)
	if err != nil {
		return err
	}
	id := in.Args[0]
	p, err := c.Pin(ctx, id, h.pin)
	if err != nil {
		return badRequestIsUsage(err)
	}
	return printPin(in, id, p)
}

// unpinHost is berth-control hosts unpin ID [--engine|--agent].
func (h *hostsCmd) unpinHost(ctx context.Context, in *cli.Invocation) error {
	kind := ""
	switch {
	case h.unpinEngine && !h.unpinAgent:
		kind = wire.KindEngine
	case h.unpinAgent && !h.unpinEngine:
		kind = wire.KindAgent
	}
	c, err := h.connect(in)
	if err != nil {
		return err
	}
	id := in.Args[0]
	p, err := c.Unpin(ctx, id, kind)
	if err != nil {
		return badRequestIsUsage(err)
	}
	return printPin(in, id, p)
}

// pinOut is the JSON of hosts pin and unpin: the host and its pins after
// the change.
type pinOut struct {
	Host string   `json:"host"`
	Pin  wire.Pin `json:"pin"`
}

func printPin(in *cli.Invocation, host string, p wire.Pin) error {
	return in.Print(pinOut{Host: host, Pin: p}, func(w io.Writer) error { return client.WritePin(w, host, p) })
}
