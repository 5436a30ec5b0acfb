//go:build tools

// Package lndbuild only pins the lnd and lncli commands so `go build` can
// build them from this module with lnd's replace directives applied.
package lndbuild

import (
	_ "github.com/lightningnetwork/lnd/cmd/lnd"
	_ "github.com/lightningnetwork/lnd/cmd/lncli"
)
