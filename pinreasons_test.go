package rdsproxy

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// TestPinReasonsAgree: the exported reasons, in declaration order, are the
// analyzer's reasons in its canonical order, with the values the API
// promises (they appear in logs and metric attributes).
func TestPinReasonsAgree(t *testing.T) {
	exported := []PinReason{PinSessionSetting, PinPreparedStatement, PinDiscard, PinTempObject, PinCursor,
		PinListen, PinLoad, PinSequence, PinAdvisoryLock, PinStatementSize}
	require.Equal(t, exported, pinReasonOrder, "every analyzer reason needs an exported PinReason, in the same order")
	require.Equal(t, []PinReason{"session_setting", "prepared_statement", "discard", "temp_object", "cursor",
		"listen", "load", "sequence", "advisory_lock", "statement_size"}, exported)
	require.LessOrEqual(t, len(pinReasonOrder), 16, "reasonBit's uint16 holds at most 16 reasons")
}
