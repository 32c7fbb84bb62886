package status

import "strings"

// Every string that comes from the spool (a file name, a parse error
// quoting a record, an alert's attribute) is written through Name or Text
// before it is shown, in the table and in the JSON alike: what a hostile
// writer puts in a name cannot move the cursor, change colours, set the
// terminal's title, start a new line that looks like one of ours, or
// hide behind a right-to-left mark.

// maxShown caps one string as shown, in bytes of its input.
const maxShown = 200

// Name returns s with every byte that is not printable ASCII, and the
// backslash, written as \xNN: one field, no blank, plain ASCII. At most
// maxShown bytes of s are shown, then "...".
func Name(s string) string { return escape(s, false) }

// Text is Name for text that may hold blanks: it keeps the space.
func Text(s string) string { return escape(s, true) }

func escape(s string, space bool) string {
	const hex = "0123456789abcdef"
	cut := len(s) > maxShown
	if cut {
		s = s[:maxShown]
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c > ' ' && c < 0x7f && c != '\\') || (space && c == ' ') {
			b.WriteByte(c)
			continue
		}
		b.WriteString(`\x`)
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
	if cut {
		b.WriteString("...")
	}
	return b.String()
}
