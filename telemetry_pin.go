// Copyright 2026 The rdsproxy Authors. SPDX-License-Identifier: Apache-2.0

package rdsproxy

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
)

// pinAttrs are the attribute options of the pinning counter for one verdict
// and one pool (owner): per kind (query, batch, prepare), one per reason.
type pinAttrs struct {
	owner *telemetry
	opts  [3][]metric.MeasurementOption
}

func pinKindIndex(kind string) int {
	switch kind {
	case PinKindBatch:
		return 1
	case PinKindPrepare:
		return 2
	}
	return 0
}

// onPin counts one execution of a pinning statement, once per reason. The
// attribute sets are built the first time and kept with the cached verdict.
func (t *telemetry) onPin(v *pinVerdict, kind string) {
	ctx := context.Background()
	if t == nil || !t.pinned.Enabled(ctx) {
		return
	}
	// The verdict keeps the first pool's attributes. Another pool sharing
	// the checker (a cluster's reader) builds its own on each execution:
	// pinning statements are the exception, not the hot path.
	a := v.tel.Load()
	if a == nil || a.owner != t {
		a = t.pinAttrsFor(v)
		v.tel.CompareAndSwap(nil, a)
	}
	for _, o := range a.opts[pinKindIndex(kind)] {
		t.pinned.Add(ctx, 1, o)
	}
}

func (t *telemetry) pinAttrsFor(v *pinVerdict) *pinAttrs {
	a := pinAttrs{owner: t}
	for k, kind := range [...]string{PinKindQuery, PinKindBatch, PinKindPrepare} {
		for _, r := range v.event.Reasons {
			kv := []attribute.KeyValue{semconv.DBClientConnectionPoolName(t.poolName), attrPinReason.String(string(r)), attrPinKind.String(kind)}
			if t.fingerprint {
				kv = append(kv, attrFingerprint.String(v.event.Fingerprint))
			}
			a.opts[k] = append(a.opts[k], metric.WithAttributeSet(attribute.NewSet(kv...)))
		}
	}
	return &a
}
