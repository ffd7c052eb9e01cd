// Copyright 2026 The rdsproxy Authors. SPDX-License-Identifier: Apache-2.0

package rdsproxy

import (
	"errors"

	"github.com/jackc/pgx/v5/pgxpool"
)

// iamOptions holds the IAM settings given as options.
type iamOptions struct{}

// configureAuth installs the password source on the pool config.
func (c *Connector) configureAuth(pc *pgxpool.Config) error {
	if c.cfg.IAM {
		return errors.New("rdsproxy: iam=true is not available in this build yet")
	}
	return nil
}
