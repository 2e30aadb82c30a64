package units

import (
	"errors"
	"testing"
)

func TestDurationString(t *testing.T) {
	for d, want := range map[Duration]string{
		0: "0s", Duration(60e9): "1m", Duration(3600e9): "1h", Duration(5400e9): "1h30m",
		Duration(3605e9): "1h0m5s", Duration(1.5e9): "1.5s", Duration(120e9): "2m",
	} {
		if got := d.String(); got != want {
			t.Errorf("Duration(%d).String() = %q, want %q", int64(d), got, want)
		}
	}
}

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    Size
		wantErr string
	}{
		{"50GiB", 50 * GiB, ""},
		{" 512MiB ", 512 * MiB, ""},
		{"1.5GB", 1500000000, ""},
		{"1024B", KiB, ""},
		{"2TB", 2e12, ""},
		{"InfGiB", 0, `"InfGiB" is too large`},
		{"-1GiB", 0, `"-1GiB" is not a size; write a number and a unit such as 512MiB, 50GiB or 2TB`},
		{"NaNGiB", 0, `"NaNGiB" is not a size; write a number and a unit such as 512MiB, 50GiB or 2TB`},
		{"50", 0, `"50" is not a size; write a number and a unit such as 512MiB, 50GiB or 2TB`},
	} {
		got, err := ParseSize(tc.in)
		gotErr := ""
		if err != nil {
			gotErr = err.Error()
			var ve *ValueError
			if !errors.As(err, &ve) || ve.Value != tc.in {
				t.Errorf("ParseSize(%q) error %#v is not a *ValueError holding the input", tc.in, err)
			}
		}
		if got != tc.want || gotErr != tc.wantErr {
			t.Errorf("ParseSize(%q) = %d, %q; want %d, %q", tc.in, got, gotErr, tc.want, tc.wantErr)
		}
	}
}

func TestSizeString(t *testing.T) {
	for s, want := range map[Size]string{0: "0B", 50 * GiB: "50GiB", 1536 * MiB: "1536MiB", 2 * TiB: "2TiB", 1000: "1000B"} {
		if got := s.String(); got != want {
			t.Errorf("Size(%d).String() = %q, want %q", int64(s), got, want)
		}
	}
}

func TestDurationUnmarshalText(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    Duration
		wantErr string
	}{
		{"90s", Duration(90e9), ""},
		{"0s", 0, ""},
		{"5 minutes", 0, `"5 minutes" is not a duration; write a Go duration such as 90s, 5m or 1h30m`},
		{"-5s", 0, `"-5s" is negative; a duration must be zero or more`},
	} {
		var got Duration
		err := got.UnmarshalText([]byte(tc.in))
		gotErr := ""
		if err != nil {
			gotErr = err.Error()
		}
		if got != tc.want || gotErr != tc.wantErr {
			t.Errorf("UnmarshalText(%q) = %v, %q; want %v, %q", tc.in, got, gotErr, tc.want, tc.wantErr)
		}
	}
}
