package proxyemu

import (
	"context"
	"fmt"
	"net"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/rdsproxy/rdsproxy/internal/pinning"
	"github.com/rdsproxy/rdsproxy/internal/testdb"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// scratchTable creates a table directly on PostgreSQL (not through an
// emulator) and drops it when the test ends.
func scratchTable(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	direct, err := pgx.Connect(ctx, "host=127.0.0.1 port=5432 user=postgres database=postgres sslmode=disable application_name=proxyemu-test")
	require.NoError(t, err)
	name := fmt.Sprintf("proxyemu_ro_%d_%d", os.Getpid(), time.Now().UnixNano())
	_, err = direct.Exec(ctx, "CREATE TABLE "+name+" (n int)")
	require.NoError(t, err)
	t.Cleanup(func() {
		_, _ = direct.Exec(context.Background(), "DROP TABLE IF EXISTS "+name)
		_ = direct.Close(context.Background())
	})
	return name
}

func simpleExec(c *pgconn.PgConn, sql string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := c.Exec(ctx, sql).ReadAll()
	return err
}

func TestReadOnlyEndpoint(t *testing.T) {
	testdb.Require(t)
	table := scratchTable(t)
	reader, _ := startProxy(t, func(c *Config) { c.ReadOnly = true })
	writer, _ := startProxy(t)

	r, err := connect(t, reader, "postgres", token(t, reader.Addr(), region, "postgres", staticCreds))
	require.NoError(t, err)
	assert.Equal(t, "on", r.ParameterStatus("default_transaction_read_only"), "what libpq's target_session_attrs looks at")
	require.NoError(t, selectOne(t, r))
	require.NoError(t, simpleExec(r, "SELECT count(*) FROM "+table))

	for _, sql := range []string{
		"INSERT INTO " + table + " VALUES (1)",
		"CREATE TABLE proxyemu_ro_never (n int)",
		"DELETE FROM " + table,
	} {
		err := simpleExec(r, sql)
		assert.Equal(t, "25006", pgErr(t, err).Code, "read_only_sql_transaction for %s", sql)
	}
	assert.Equal(t, 0, reader.PinnedNow(), "failed writes do not pin")

	// The writer door is not read-only.
	w, err := connect(t, writer, "postgres", token(t, writer.Addr(), region, "postgres", staticCreds))
	require.NoError(t, err)
	require.NoError(t, simpleExec(w, "INSERT INTO "+table+" VALUES (1)"))

	// A stand-in, not a reader: a client can turn the default off, and that
	// SET pins the session.
	require.NoError(t, simpleExec(r, "SET default_transaction_read_only = off"))
	require.NoError(t, simpleExec(r, "INSERT INTO "+table+" VALUES (2)"))
	require.Len(t, reader.PinnedSessions(), 1)
	assert.Equal(t, pinning.ReasonSessionSetting, reader.PinnedSessions()[0].Reason)
}

func TestStopRestart(t *testing.T) {
	testdb.Require(t)
	p, _ := startProxy(t, func(c *Config) { c.ReadOnly = true })
	tok := token(t, p.Addr(), region, "postgres", staticCreds)
	pool := p.CACertPool()
	caBefore, portBefore := p.CAPEM(), p.Port()

	c, err := connect(t, p, "postgres", tok)
	require.NoError(t, err)
	require.NoError(t, selectOne(t, c))
	require.NoError(t, simpleExec(c, "SET work_mem = '8MB'"))
	require.Equal(t, 1, p.PinnedNow())
	// A client stuck before TLS must not hold Stop up.
	stuck, err := net.Dial("tcp", p.Addr())
	require.NoError(t, err)
	defer stuck.Close()
	require.Eventually(t, func() bool { return p.ClientConnections() == 2 }, 10*time.Second, 5*time.Millisecond)

	stopped := make(chan error, 1)
	go func() { stopped <- p.Stop() }()
	select {
	case err := <-stopped:
		require.NoError(t, err)
	case <-time.After(30 * time.Second):
		t.Fatal("Stop did not return")
	}
	assert.False(t, p.Serving())
	assert.Equal(t, 0, p.ClientConnections(), "Stop returns once every session is gone")
	assert.Equal(t, 0, p.PinnedNow())
	assert.EqualValues(t, 1, p.PinnedTotal(), "counters survive Stop")
	require.Error(t, selectOne(t, c), "open sessions are closed")
	_, err = net.DialTimeout("tcp", p.Addr(), 5*time.Second)
	require.Error(t, err, "dial refused while stopped")
	require.NoError(t, p.Stop(), "Stop on a stopped emulator does nothing")

	p.RejectNextAuth(1) // fault settings carry over a restart
	require.NoError(t, p.Restart())
	require.NoError(t, p.Restart(), "Restart while serving does nothing")
	assert.True(t, p.Serving())
	assert.Equal(t, portBefore, p.Port())
	assert.Equal(t, caBefore, p.CAPEM(), "same CA: clients keep trusting it")

	_, err = connect(t, p, "postgres", tok)
	assert.Equal(t, CodeAuthFailed, pgErr(t, err).Code)
	cfg := connConfig(t, p, "postgres", tok, true)
	cfg.TLSConfig.RootCAs = pool // the pool taken before Stop
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	c2, err := pgconn.ConnectConfig(ctx, cfg)
	require.NoError(t, err, "traffic returns on the same port")
	defer c2.Close(context.Background())
	require.NoError(t, selectOne(t, c2))
	assert.Equal(t, "on", c2.ParameterStatus("default_transaction_read_only"), "still a read-only door")
	assert.EqualValues(t, 2, p.Authentications())

	require.NoError(t, p.Close())
	assert.Error(t, p.Restart(), "no restart after Close")
	assert.False(t, p.Serving())
}
