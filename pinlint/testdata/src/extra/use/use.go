package use

import "extra/db"

func f(s db.Store, p *db.Store) {
	db.Run("SET x = 1", "SET search_path TO a") // want `session_setting: SET search_path TO \?`
	db.Other("SET search_path TO a")
	s.Exec("LISTEN x") // want `listen: LISTEN x .*\[method extra/db.Store.Exec\]`
	p.Exec("LISTEN y") // want `listen: LISTEN y`
	p.Query("LISTEN z")
}
