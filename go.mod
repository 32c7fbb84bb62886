module github.com/ytkeep/ytkeep

go 1.26.8

require (
	github.com/BurntSushi/toml v1.6.0
	github.com/fsnotify/fsnotify v1.10.1
	github.com/slack-go/slack v0.35.0
	golang.org/x/sys v0.50.0
)

require github.com/gorilla/websocket v1.5.3 // indirect
