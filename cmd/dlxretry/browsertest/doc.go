// Package browsertest drives the dlxretry console in a real browser:
// Chromium, headless, through chromedp. It is a module of its own so that
// chromedp stays out of github.com/dlxretry/dlxretry's go.mod.
//
// Run it from this directory with a RabbitMQ broker (see internal/brokertest)
// and Chromium installed (Debian: apt-get install chromium):
//
//	go test ./...
//
// Without Chromium the tests skip, unless DLXRETRY_REQUIRE_BROWSER=1, which
// makes them fail. DLXRETRY_CHROME names the browser's executable when it is
// not on PATH as chromium, chromium-browser or google-chrome.
// DLXRETRY_SCREENSHOTS=DIR saves the pages the tests visit as
// DIR/console-*.png (the README's screenshots come from there).
package browsertest
