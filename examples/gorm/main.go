// Command gorm runs GORM (gorm.io/gorm with gorm.io/driver/postgres) on
// rdsproxy: migrations, CRUD and a transaction.
//
// GORM's postgres driver takes the *sql.DB from rdsproxy.Open as its
// connection pool, so the pool limits, the IAM token hook and the pinning
// check all apply. Connecting runs no SQL of GORM's own besides a ping.
//
// Two GORM settings matter behind RDS Proxy:
//
//   - PrepareStmt: true makes GORM call db.Prepare for every statement, which
//     creates a named server-side prepared statement per statement and
//     connection: session state, so every connection that runs one pins its
//     proxy session. rdsproxy reports each one (reason prepared_statement).
//     Leave it off: rdsproxy's default exec mode already caches statement
//     descriptions on the client without server state.
//
//   - Session settings such as TimeZone or search_path belong in the DSN
//     (startup parameters, which the proxy accepts), never in a SET issued
//     after connecting (a connect hook, db.Exec("SET ..."), a callback):
//     SET pins.
//
// Run it with:
//
//	DATABASE_URL=postgres://... go run ./gorm
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/rdsproxy/rdsproxy"
)

const defaultDatabaseURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// Product is the example's model; its table is gorm_products.
type Product struct {
	ID        uint `gorm:"primaryKey"`
	Code      string
	Price     int
	CreatedAt time.Time
}

// TableName keeps the example's table apart from others in the database.
func (Product) TableName() string { return "gorm_products" }

func main() {
	dsn := os.Getenv("DATABASE_URL")
	if dsn == "" {
		dsn = defaultDatabaseURL
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := run(ctx, dsn, os.Stdout, false); err != nil {
		fmt.Fprintln(os.Stderr, "gorm:", err)
		os.Exit(1)
	}
}

// open opens GORM on rdsproxy's *sql.DB. prepareStmt is GORM's PrepareStmt,
// shown to pin.
func open(dsn string, prepareStmt bool, opts ...rdsproxy.Option) (*gorm.DB, error) {
	sqlDB, err := rdsproxy.Open(dsn, opts...)
	if err != nil {
		return nil, err
	}
	db, err := gorm.Open(postgres.New(postgres.Config{Conn: sqlDB}), &gorm.Config{
		PrepareStmt: prepareStmt, // keep false behind RDS Proxy
		Logger:      logger.Default.LogMode(logger.Silent),
	})
	if err != nil {
		sqlDB.Close()
		return nil, err
	}
	return db, nil
}

func run(ctx context.Context, dsn string, out io.Writer, prepareStmt bool, opts ...rdsproxy.Option) error {
	db, err := open(dsn, prepareStmt, opts...)
	if err != nil {
		return err
	}
	sqlDB, err := db.DB()
	if err != nil {
		return err
	}
	defer sqlDB.Close()
	db = db.WithContext(ctx)

	// Migrations.
	if err := db.AutoMigrate(&Product{}); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}

	// CRUD.
	p := Product{Code: fmt.Sprintf("D%d", time.Now().UnixNano()), Price: 100}
	if err := db.Create(&p).Error; err != nil {
		return err
	}
	defer db.Delete(&Product{}, p.ID)
	var got Product
	if err := db.First(&got, "code = ?", p.Code).Error; err != nil {
		return err
	}
	if err := db.Model(&got).Update("price", 200).Error; err != nil {
		return err
	}

	// A transaction: committed when the function returns nil.
	err = db.Transaction(func(tx *gorm.DB) error {
		if err := tx.Model(&Product{}).Where("id = ?", p.ID).Update("price", gorm.Expr("price + ?", 50)).Error; err != nil {
			return err
		}
		return tx.First(&got, p.ID).Error
	})
	if err != nil {
		return err
	}
	// A transaction rolled back by its error.
	errRollback := errors.New("roll back")
	err = db.Transaction(func(tx *gorm.DB) error {
		if err := tx.Model(&Product{}).Where("id = ?", p.ID).Update("price", 0).Error; err != nil {
			return err
		}
		return errRollback
	})
	if !errors.Is(err, errRollback) {
		return fmt.Errorf("rollback: %v", err)
	}
	if err := db.First(&got, p.ID).Error; err != nil {
		return err
	}
	fmt.Fprintf(out, "product %s: price %d\n", got.Code, got.Price)
	return nil
}
