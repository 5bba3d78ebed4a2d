package quota

import (
	"fmt"
	"strconv"
	"time"
)

// Period is the calendar period of a token quota, in UTC. The empty Period
// means the consumer has no quota.
type Period string

// Quota periods. Weeks start on Monday, 00:00 UTC.
const (
	NoPeriod Period = ""
	Hourly   Period = "hourly"
	Daily    Period = "daily"
	Weekly   Period = "weekly"
	Monthly  Period = "monthly"
	Yearly   Period = "yearly"
)

// Valid reports whether p is NoPeriod or one of the known periods.
func (p Period) Valid() bool {
	switch p {
	case NoPeriod, Hourly, Daily, Weekly, Monthly, Yearly:
		return true
	}
	return false
}

// Bounds returns the UTC period [start, end) that contains t. For NoPeriod
// (or an unknown period) both are zero.
func (p Period) Bounds(t time.Time) (start, end time.Time) {
	t = t.UTC()
	y, m, d := t.Date()
	switch p {
	case Hourly:
		start = time.Date(y, m, d, t.Hour(), 0, 0, 0, time.UTC)
		return start, start.Add(time.Hour)
	case Daily:
		start = time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
		return start, start.AddDate(0, 0, 1)
	case Weekly:
		sinceMonday := (int(t.Weekday()) + 6) % 7
		start = time.Date(y, m, d-sinceMonday, 0, 0, 0, 0, time.UTC)
		return start, start.AddDate(0, 0, 7)
	case Monthly:
		start = time.Date(y, m, 1, 0, 0, 0, 0, time.UTC)
		return start, start.AddDate(0, 1, 0)
	case Yearly:
		start = time.Date(y, 1, 1, 0, 0, 0, 0, time.UTC)
		return start, start.AddDate(1, 0, 0)
	}
	return time.Time{}, time.Time{}
}

// Limits are one consumer's limits. Zero values mean unlimited.
type Limits struct {
	// TPM is the most tokens admitted in any sliding 60-second window.
	TPM int64
	// QuotaTokens is the most tokens charged in one Period.
	QuotaTokens int64
	// Period is the calendar period of QuotaTokens.
	Period Period
}

// remaining returns what is left of the TPM limit with used tokens in the
// window, never negative; 0 when there is no limit.
func (lim Limits) remaining(used int64) int64 {
	if lim.TPM <= 0 {
		return 0
	}
	return max(lim.TPM-used, 0)
}

// left is remaining for the admin API: Unlimited when there is no limit.
func (lim Limits) left(used int64) Left {
	if lim.TPM <= 0 {
		return Unlimited
	}
	return Left(lim.remaining(used))
}

// Left is what remains of a TPM limit as the admin API shows it: a count of
// tokens, or Unlimited, written as JSON null (no limit, nothing to run out of).
type Left int64

// Unlimited is the Left of a counter without a TPM limit.
const Unlimited Left = -1

// MarshalJSON writes Unlimited as null.
func (l Left) MarshalJSON() ([]byte, error) {
	if l < 0 {
		return []byte("null"), nil
	}
	return strconv.AppendInt(nil, int64(l), 10), nil
}

func (lim Limits) validate() error {
	if lim.TPM < 0 {
		return fmt.Errorf("tpm %d: must not be negative", lim.TPM)
	}
	if lim.QuotaTokens < 0 {
		return fmt.Errorf("quota tokens %d: must not be negative", lim.QuotaTokens)
	}
	if !lim.Period.Valid() {
		return fmt.Errorf("period %q: not one of hourly, daily, weekly, monthly, yearly", lim.Period)
	}
	if lim.QuotaTokens > 0 && lim.Period == NoPeriod {
		return fmt.Errorf("quota of %d tokens has no period", lim.QuotaTokens)
	}
	return nil
}
