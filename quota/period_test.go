package quota

import (
	"testing"
	"time"
)

func TestPeriodBounds(t *testing.T) {
	d := func(y int, m time.Month, day, h, min, s int) time.Time {
		return time.Date(y, m, day, h, min, s, 0, time.UTC)
	}
	tests := []struct {
		name       string
		p          Period
		at         time.Time
		start, end time.Time
	}{
		{"hourly mid hour", Hourly, d(2025, 6, 11, 12, 34, 56), d(2025, 6, 11, 12, 0, 0), d(2025, 6, 11, 13, 0, 0)},
		{"hourly last second of a day", Hourly, d(2025, 12, 31, 23, 59, 59), d(2025, 12, 31, 23, 0, 0), d(2026, 1, 1, 0, 0, 0)},
		{"daily at midnight belongs to the new day", Daily, d(2025, 6, 11, 0, 0, 0), d(2025, 6, 11, 0, 0, 0), d(2025, 6, 12, 0, 0, 0)},
		{"daily end of month", Daily, d(2025, 4, 30, 23, 0, 0), d(2025, 4, 30, 0, 0, 0), d(2025, 5, 1, 0, 0, 0)},
		{"weekly on a Wednesday starts Monday", Weekly, d(2025, 6, 11, 9, 0, 0), d(2025, 6, 9, 0, 0, 0), d(2025, 6, 16, 0, 0, 0)},
		{"weekly Sunday night is still last week", Weekly, d(2025, 6, 15, 23, 59, 59), d(2025, 6, 9, 0, 0, 0), d(2025, 6, 16, 0, 0, 0)},
		{"weekly Monday midnight starts a week", Weekly, d(2025, 6, 16, 0, 0, 0), d(2025, 6, 16, 0, 0, 0), d(2025, 6, 23, 0, 0, 0)},
		{"weekly across a year end", Weekly, d(2026, 1, 1, 8, 0, 0), d(2025, 12, 29, 0, 0, 0), d(2026, 1, 5, 0, 0, 0)},
		{"weekly across a month end", Weekly, d(2025, 3, 2, 10, 0, 0), d(2025, 2, 24, 0, 0, 0), d(2025, 3, 3, 0, 0, 0)},
		{"monthly February of a leap year", Monthly, d(2024, 2, 29, 23, 59, 59), d(2024, 2, 1, 0, 0, 0), d(2024, 3, 1, 0, 0, 0)},
		{"monthly December", Monthly, d(2025, 12, 15, 0, 0, 0), d(2025, 12, 1, 0, 0, 0), d(2026, 1, 1, 0, 0, 0)},
		{"yearly", Yearly, d(2025, 12, 31, 23, 59, 59), d(2025, 1, 1, 0, 0, 0), d(2026, 1, 1, 0, 0, 0)},
		{"yearly first instant", Yearly, d(2026, 1, 1, 0, 0, 0), d(2026, 1, 1, 0, 0, 0), d(2027, 1, 1, 0, 0, 0)},
		{"non-UTC input is converted", Daily, time.Date(2025, 6, 11, 1, 0, 0, 0, time.FixedZone("CEST", 2*3600)), d(2025, 6, 10, 0, 0, 0), d(2025, 6, 11, 0, 0, 0)},
		{"no period has no bounds", NoPeriod, d(2025, 6, 11, 0, 0, 0), time.Time{}, time.Time{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start, end := tt.p.Bounds(tt.at)
			if !start.Equal(tt.start) || !end.Equal(tt.end) {
				t.Errorf("%s.Bounds(%s) = [%s, %s), want [%s, %s)", tt.p, tt.at, start, end, tt.start, tt.end)
			}
		})
	}
}

func TestLimitsValidate(t *testing.T) {
	tests := []struct {
		name string
		lim  Limits
		ok   bool
	}{
		{"unlimited", Limits{}, true},
		{"tpm only", Limits{TPM: 5}, true},
		{"quota with period", Limits{QuotaTokens: 5, Period: Daily}, true},
		{"period without tokens", Limits{Period: Weekly}, true},
		{"negative tpm", Limits{TPM: -1}, false},
		{"negative quota", Limits{QuotaTokens: -1, Period: Daily}, false},
		{"quota without period", Limits{QuotaTokens: 5}, false},
		{"unknown period", Limits{QuotaTokens: 5, Period: "fortnightly"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.lim.validate(); (err == nil) != tt.ok {
				t.Errorf("validate(%+v) = %v, want ok=%v", tt.lim, err, tt.ok)
			}
		})
	}
}
