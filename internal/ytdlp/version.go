package ytdlp

// CurrentVersion is the oldest yt-dlp that, with a JavaScript runtime such
// as Deno, downloads from YouTube as it is now. Older ones still run (and
// work against the test media server) but are announced as too old.
const CurrentVersion = "2025.11.12"

// OlderThan reports whether version (as ParseVersion returns it, a date
// YYYY.MM.DD with an optional suffix) is older than date.
func OlderThan(version, date string) bool {
	return len(version) < 10 || version[:10] < date
}
