// Copyright 2026 The rdsproxy Authors. SPDX-License-Identifier: Apache-2.0

package rdsproxy

import "github.com/jackc/pgx/v5"

// DefaultQueryExecMode is the pgx query exec mode used when the DSN does not
// set default_query_exec_mode. The "RDS Proxy" section of the package
// documentation gives the evidence behind the choice.
const DefaultQueryExecMode = pgx.QueryExecModeCacheDescribe
