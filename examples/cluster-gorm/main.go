// Command cluster-gorm runs GORM on both endpoints of an RDS Proxy: writes
// and transactions on the default endpoint, reads on the read-only endpoint
// (the Aurora readers), through gorm.io/plugin/dbresolver and one
// rdsproxy.Cluster.
//
// The application configures the two endpoints the usual way, DB_WRITE_HOST
// and DB_READ_HOST, and builds one DSN from them (clusterDSN): read_host is
// the read-only endpoint, and everything else (user, database, IAM, pool
// settings) is the writer's. The two pools share one IAM token source and
// one pinning check.
//
// dbresolver sends GORM's queries (First, Find, Raw SELECTs) to the replica
// and everything else, transactions included, to the source. It gives no
// read-your-writes: a row just written may not be on the reader yet (Aurora
// replica lag), so read it with Clauses(dbresolver.Write).
//
// Run it with:
//
//	DB_WRITE_HOST=my-proxy.proxy-abc.us-east-1.rds.amazonaws.com \
//	DB_READ_HOST=my-proxy-ro.endpoint.proxy-abc.us-east-1.rds.amazonaws.com \
//	DB_USER=app DB_NAME=appdb go run ./cluster-gorm
//
// or against a local PostgreSQL with DATABASE_URL (both pools on it).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"time"

	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
	"gorm.io/plugin/dbresolver"

	"github.com/rdsproxy/rdsproxy"
)

// defaultDatabaseURL is a local PostgreSQL; its read_host is the same server.
const defaultDatabaseURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable&read_host=127.0.0.1"

// Order is the example's model; its table is cluster_gorm_orders.
type Order struct {
	ID        uint `gorm:"primaryKey"`
	Item      string
	Quantity  int
	CreatedAt time.Time
}

// TableName keeps the example's table apart from others in the database.
func (Order) TableName() string { return "cluster_gorm_orders" }

func main() {
	dsn := os.Getenv("DATABASE_URL")
	if host := os.Getenv("DB_WRITE_HOST"); host != "" {
		dsn = clusterDSN(host, os.Getenv("DB_READ_HOST"), os.Getenv("DB_USER"), os.Getenv("DB_NAME"))
	}
	if dsn == "" {
		dsn = defaultDatabaseURL
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := run(ctx, dsn, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "cluster-gorm:", err)
		os.Exit(1)
	}
}

// clusterDSN builds one DSN for rdsproxy.OpenCluster from the two endpoints
// (host or host:port each). Without a read host, Reader is the writer pool.
func clusterDSN(writeHost, readHost, user, dbname string) string {
	q := url.Values{"iam": {"true"}}
	if readHost != "" {
		q.Set("read_host", readHost)
	}
	u := url.URL{Scheme: "postgres", User: url.User(user), Host: writeHost, Path: "/" + dbname, RawQuery: q.Encode()}
	return u.String()
}

// open opens GORM on the cluster: the writer pool as GORM's connection, the
// reader pool as dbresolver's replica.
func open(dsn string, opts ...rdsproxy.Option) (*gorm.DB, *rdsproxy.Cluster, error) {
	cluster, err := rdsproxy.OpenCluster(dsn, opts...)
	if err != nil {
		return nil, nil, err
	}
	db, err := gorm.Open(postgres.New(postgres.Config{Conn: cluster.Writer()}), &gorm.Config{
		Logger: logger.Default.LogMode(logger.Silent),
	})
	if err == nil {
		err = db.Use(dbresolver.Register(dbresolver.Config{
			Replicas: []gorm.Dialector{postgres.New(postgres.Config{Conn: cluster.Reader()})},
		}))
	}
	if err != nil {
		cluster.Close()
		return nil, nil, err
	}
	return db, cluster, nil
}

func run(ctx context.Context, dsn string, out io.Writer, opts ...rdsproxy.Option) error {
	db, cluster, err := open(dsn, opts...)
	if err != nil {
		return err
	}
	defer cluster.Close()
	db = db.WithContext(ctx)

	if err := db.AutoMigrate(&Order{}); err != nil { // the writer
		return fmt.Errorf("migrate: %w", err)
	}
	o := Order{Item: fmt.Sprintf("widget-%d", time.Now().UnixNano()), Quantity: 3}
	if err := db.Create(&o).Error; err != nil { // the writer
		return err
	}
	defer db.Delete(&Order{}, o.ID)

	// Read-your-writes: the row was just written, so read it on the writer.
	var fresh Order
	if err := db.Clauses(dbresolver.Write).First(&fresh, o.ID).Error; err != nil {
		return err
	}

	// An ordinary read goes to the reader.
	var count int64
	if err := db.Model(&Order{}).Count(&count).Error; err != nil {
		return err
	}

	// A write sent to the reader by mistake is refused with SQLSTATE 25006;
	// it was not executed, so it can go to the writer.
	err = db.Clauses(dbresolver.Read).Model(&Order{}).Where("id = ?", o.ID).Update("quantity", 4).Error
	if rdsproxy.IsReadOnlyViolation(err) {
		err = db.Clauses(dbresolver.Write).Model(&Order{}).Where("id = ?", o.ID).Update("quantity", 4).Error
	}
	if err != nil {
		return err
	}

	var where string
	if err := db.Raw("SELECT current_setting('transaction_read_only')").Scan(&where).Error; err != nil {
		return err
	}
	if where == "" {
		return errors.New("no answer from the reader")
	}
	fmt.Fprintf(out, "order %s: quantity %d; reads see %d orders; reader read-only: %s\n", fresh.Item, fresh.Quantity, count, where)
	return nil
}
