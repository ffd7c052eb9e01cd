// Copyright 2026 The rdsproxy Authors. SPDX-License-Identifier: Apache-2.0

package pinlint

import (
	"fmt"
	"go/token"
	"path/filepath"

	"go.yaml.in/yaml/v3"
)

// KindSQLCConfig is the Source of findings in sqlc configuration.
const KindSQLCConfig = "sqlc config"

// sqlcPrepareKey is sqlc's option (v1 packages[] and v2 sql[].gen.go) that
// generates a Prepare creating a named server-side statement per query.
const sqlcPrepareKey = "emit_prepared_queries"

// IsSQLCConfig reports whether name is a sqlc configuration file.
func IsSQLCConfig(name string) bool {
	switch filepath.Base(name) {
	case "sqlc.yaml", "sqlc.yml", "sqlc.json":
		return true
	}
	return false
}

// CheckSQLCConfig reports each emit_prepared_queries: true in a sqlc
// configuration (YAML or JSON, which the YAML parser reads too), at the line
// of the setting. An error means the file is not valid YAML or JSON.
func CheckSQLCConfig(name string, src []byte) (*Result, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(src, &root); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	allow := sqlAllowances(name, string(src))
	var out []Finding
	var walk func(n *yaml.Node)
	walk = func(n *yaml.Node) {
		if n.Kind == yaml.MappingNode {
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				var on bool
				if k.Value == sqlcPrepareKey && v.Kind == yaml.ScalarNode && v.Decode(&on) == nil && on {
					f := Finding{Pos: positionOf(name, k), Reasons: mergeReasons(nil, prepared),
						Statement: sqlcPrepareKey + ": true", Remedy: sqlcPrepareRemedy, Source: KindSQLCConfig}
					allow.apply(&f, k.Line)
					out = append(out, f)
				}
			}
		}
		for _, c := range n.Content {
			walk(c)
		}
	}
	walk(&root)
	return &Result{Findings: out, AllowPins: allow.list()}, nil
}

func positionOf(name string, n *yaml.Node) token.Position {
	return token.Position{Filename: name, Line: n.Line, Column: n.Column}
}
