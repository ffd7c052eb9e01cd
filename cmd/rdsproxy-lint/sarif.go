// Copyright 2026 The rdsproxy Authors. SPDX-License-Identifier: Apache-2.0

package main

import (
	"encoding/json"
	"io"

	"github.com/rdsproxy/rdsproxy"
	"github.com/rdsproxy/rdsproxy/pinlint"
)

// SARIF 2.1.0, the subset GitHub code scanning reads. The types are written
// here because the format needs only these few fields and no maintained Go
// SARIF library is in the module graph.

const (
	sarifVersion = "2.1.0"
	sarifSchema  = "https://json.schemastore.org/sarif-2.1.0.json"
	toolName     = "rdsproxy-lint"
	toolInfoURI  = "https://pkg.go.dev/github.com/rdsproxy/rdsproxy/cmd/rdsproxy-lint"
)

type sarifLog struct {
	Version string     `json:"version"`
	Schema  string     `json:"$schema"`
	Runs    []sarifRun `json:"runs"`
}

type sarifRun struct {
	Tool    sarifTool     `json:"tool"`
	Results []sarifResult `json:"results"`
}

type sarifTool struct {
	Driver sarifDriver `json:"driver"`
}

type sarifDriver struct {
	Name           string      `json:"name"`
	InformationURI string      `json:"informationUri"`
	Rules          []sarifRule `json:"rules"`
}

type sarifRule struct {
	ID               string       `json:"id"`
	ShortDescription sarifMessage `json:"shortDescription"`
}

type sarifMessage struct {
	Text string `json:"text"`
}

type sarifResult struct {
	RuleID       string             `json:"ruleId"`
	Level        string             `json:"level"`
	Message      sarifMessage       `json:"message"`
	Locations    []sarifLocation    `json:"locations"`
	Suppressions []sarifSuppression `json:"suppressions,omitempty"`
	Properties   map[string]any     `json:"properties,omitempty"`
}

type sarifLocation struct {
	PhysicalLocation sarifPhysical `json:"physicalLocation"`
}

type sarifPhysical struct {
	ArtifactLocation sarifArtifact `json:"artifactLocation"`
	Region           sarifRegion   `json:"region"`
}

type sarifArtifact struct {
	URI string `json:"uri"`
}

type sarifRegion struct {
	StartLine   int `json:"startLine"`
	StartColumn int `json:"startColumn"`
}

type sarifSuppression struct {
	Kind          string `json:"kind"`
	Justification string `json:"justification"`
}

// ruleDescriptions are the rules, one per pin reason.
var ruleDescriptions = []struct {
	reason rdsproxy.PinReason
	text   string
}{
	{rdsproxy.PinSessionSetting, "SET/RESET or set_config pins the RDS Proxy session"},
	{rdsproxy.PinPreparedStatement, "a named prepared statement (SQL PREPARE, a driver Prepare, GORM PrepareStmt, sqlc emit_prepared_queries) pins the RDS Proxy session"},
	{rdsproxy.PinDiscard, "DISCARD pins the RDS Proxy session"},
	{rdsproxy.PinTempObject, "a temporary table, view or sequence pins the RDS Proxy session"},
	{rdsproxy.PinCursor, "DECLARE ... CURSOR pins the RDS Proxy session"},
	{rdsproxy.PinListen, "LISTEN/UNLISTEN pins the RDS Proxy session"},
	{rdsproxy.PinLoad, "LOAD pins the RDS Proxy session"},
	{rdsproxy.PinSequence, "nextval/setval pins the RDS Proxy session"},
	{rdsproxy.PinAdvisoryLock, "a session-level advisory lock pins the RDS Proxy session"},
	{rdsproxy.PinStatementSize, "statement text over 16384 bytes pins the RDS Proxy session"},
}

func sarifResultOf(f pinlint.Finding) sarifResult {
	rs := make([]string, len(f.Reasons))
	for i, r := range f.Reasons {
		rs[i] = string(r)
	}
	r := sarifResult{
		RuleID:  rs[0],
		Level:   "error",
		Message: sarifMessage{Text: f.Message() + " [" + f.Source + "]"},
		Locations: []sarifLocation{{PhysicalLocation: sarifPhysical{
			ArtifactLocation: sarifArtifact{URI: f.Pos.Filename},
			Region:           sarifRegion{StartLine: f.Pos.Line, StartColumn: max(f.Pos.Column, 1)},
		}}},
		Properties: map[string]any{"reasons": rs, "statement": f.Statement, "source": f.Source},
	}
	if f.Suppressed {
		r.Suppressions = []sarifSuppression{{Kind: "inSource", Justification: f.Justification}}
	}
	return r
}

// writeSARIF writes findings and allowed findings (with an inSource
// suppression, which code scanning shows as dismissed).
func writeSARIF(w io.Writer, rep *report) error {
	driver := sarifDriver{Name: toolName, InformationURI: toolInfoURI}
	for _, d := range ruleDescriptions {
		driver.Rules = append(driver.Rules, sarifRule{ID: string(d.reason), ShortDescription: sarifMessage{Text: d.text}})
	}
	run := sarifRun{Tool: sarifTool{Driver: driver}, Results: []sarifResult{}}
	for _, f := range rep.findings {
		run.Results = append(run.Results, sarifResultOf(f))
	}
	for _, f := range rep.suppressed {
		run.Results = append(run.Results, sarifResultOf(f))
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(sarifLog{Version: sarifVersion, Schema: sarifSchema, Runs: []sarifRun{{Tool: run.Tool, Results: run.Results}}})
}
