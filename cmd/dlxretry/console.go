package main

var consoleCommand = &command{name: "console", short: "serve a web console for parked messages"}
