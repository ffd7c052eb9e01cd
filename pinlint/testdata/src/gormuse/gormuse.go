package gormuse

import "gorm.io/gorm"

func positives(db *gorm.DB) {
	db.Raw("SELECT pg_advisory_lock(1)")            // want `advisory_lock`
	db.Exec("SET search_path TO app")               // want `session_setting`
	gorm.Open(nil, &gorm.Config{PrepareStmt: true}) // want `prepared_statement: PrepareStmt: true \(leave GORM's PrepareStmt off`
	db.Session(&gorm.Session{PrepareStmt: true})    // want `prepared_statement: PrepareStmt: true`
	var cfg gorm.Config
	cfg.PrepareStmt = true // want `prepared_statement: PrepareStmt: true`
}

func negatives(db *gorm.DB, on bool) {
	db.Raw("SELECT * FROM t WHERE id = ?", 1)
	// Where's argument is a condition, not a statement.
	db.Where("SET search_path TO app")
	gorm.Open(nil, &gorm.Config{PrepareStmt: false, SkipDefaultTransaction: true})
	gorm.Open(nil, &gorm.Config{PrepareStmt: on}) // unchecked: no caller passes a constant
}

// open's prepare parameter is followed to its callers.
func open(prepare bool) {
	gorm.Open(nil, &gorm.Config{PrepareStmt: prepare}) // want `prepared_statement: PrepareStmt: true \(.*\) \[value from gormuse.go:\d+\]`
}

func callers() {
	open(false)
	open(true)
}

// Config is an unrelated type with the same field.
type Config struct{ PrepareStmt bool }

var _ = Config{PrepareStmt: true}
