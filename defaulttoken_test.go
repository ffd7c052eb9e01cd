package rdsproxy_test

import (
	"database/sql"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rdsproxy/rdsproxy"
	"github.com/rdsproxy/rdsproxy/internal/testiam"
)

// useDefaultChain makes the AWS SDK's default credential chain resolve to the
// test's static credentials and nothing else (no shared files, no instance
// metadata), and gives the test a fresh process-wide token source.
func useDefaultChain(t *testing.T) {
	t.Helper()
	dir := t.TempDir()
	t.Setenv("AWS_ACCESS_KEY_ID", testiam.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", testiam.SecretKey)
	t.Setenv("AWS_SESSION_TOKEN", "")
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_CONFIG_FILE", dir+"/config")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", dir+"/credentials")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	rdsproxy.ResetDefaultTokenSource(nil)
	t.Cleanup(func() { rdsproxy.ResetDefaultTokenSource(nil) })
}

// TestDefaultTokenSourceSharedByPlainSQLOpen: 200 *sql.DB from plain
// sql.Open, dialing in 4 waves 1.1 s apart (so that X-Amz-Date, with its
// 1-second resolution, would tell two signings apart), sign exactly once:
// every connector on the default chain shares the process-wide source.
func TestDefaultTokenSourceSharedByPlainSQLOpen(t *testing.T) {
	useDefaultChain(t)
	u, err := url.Parse(pgbouncerURL(t))
	require.NoError(t, err)
	p, dsn := testiam.Start(t, testiam.Backend(u.Host))

	const waves, perWave = 4, 50
	for wave := range waves {
		if wave > 0 {
			time.Sleep(1100 * time.Millisecond)
		}
		dbs := make([]*sql.DB, perWave)
		errs := make([]error, perWave)
		var wg sync.WaitGroup
		for i := range dbs {
			db, err := sql.Open("rdsproxy", dsn)
			require.NoError(t, err)
			dbs[i] = db
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = queryOne(db)
			}()
		}
		wg.Wait()
		for i, db := range dbs {
			require.NoError(t, errs[i], "wave %d, *sql.DB %d", wave, i)
			require.NoError(t, db.Close())
		}
	}
	require.EqualValues(t, waves*perWave, p.Authentications())
	require.Equal(t, 1, p.DistinctTokens(), "200 *sql.DB on the default chain must share one signing")
	require.EqualValues(t, 1, rdsproxy.DefaultTokenSource().Signings())
}

// TestDefaultTokenSourceNotUsedWithExplicitCredentials: a connector given
// credentials signs with a source of its own, never the process-wide one.
func TestDefaultTokenSourceNotUsedWithExplicitCredentials(t *testing.T) {
	useDefaultChain(t)
	p, dsn := testiam.Start(t)
	db, err := rdsproxy.Open(dsn, rdsproxy.WithCredentialsProvider(testiam.Credentials))
	require.NoError(t, err)
	defer db.Close()
	require.NoError(t, queryOne(db))
	require.EqualValues(t, 1, p.Authentications())
	require.Zero(t, rdsproxy.DefaultTokenSource().Signings())
}
