// Copyright 2026 The rdsproxy Authors. SPDX-License-Identifier: Apache-2.0

// Package faults is rdsproxy's fault and load suite: backends killed under
// load, PgBouncer and PostgreSQL restarts, the proxy dropping idle clients,
// borrow timeouts, a cold-start storm, a credentials outage, bad input, and
// secrets and leak checks over all of them. It has tests only.
//
// The default run is bounded and part of ./test.sh. RDSPROXY_SOAK=1 runs the
// long mode with larger numbers. RDSPROXY_FAULTS_RESTART_PG=1 enables
// TestPostgresRestart, which restarts the local PostgreSQL cluster and so
// must run alone (test.sh runs it after the parallel package tests).
// RELIABILITY.md at the repository's root lists what each test asserts and
// the results of the last runs.
package faults
