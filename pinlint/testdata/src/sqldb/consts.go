package sqldb

// Constants used from the other file.
const (
	setPath    = "SET search_path TO " + schema
	schema     = "tenant"
	selectOne  = "SELECT 1"
	lockPrefix = "SELECT pg_advisory_lock("
)
