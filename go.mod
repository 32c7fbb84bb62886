module github.com/ytkeep/ytkeep

go 1.26.8

require golang.org/x/sys v0.50.0

require (
	github.com/gorilla/websocket v1.5.3 // indirect
	github.com/slack-go/slack v0.35.0 // indirect
)
