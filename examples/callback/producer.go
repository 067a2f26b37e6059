package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
)

// maxBody bounds a producer request.
const maxBody = 64 << 10

// job is what the producer accepts and puts on the queue.
type job struct {
	Message     string `json:"message"`
	CallbackURL string `json:"callback_url"`
}

// producer is the HTTP endpoint that queues jobs.
type producer struct {
	publish func(ctx context.Context, body []byte) error
}

func (p *producer) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /queue/producer/", p.produce)
	return mux
}

// produce answers 202 once the broker has confirmed the job, 400 with the
// reason for a request it cannot take, and 503 if publishing failed.
func (p *producer) produce(w http.ResponseWriter, r *http.Request) {
	j, err := readJob(w, r)
	if err != nil {
		reply(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	body, _ := json.Marshal(j)
	if err := p.publish(r.Context(), body); err != nil {
		reply(w, http.StatusServiceUnavailable, map[string]string{"error": "cannot queue the message: " + err.Error()})
		return
	}
	reply(w, http.StatusAccepted, map[string]string{"status": "queued", "message": j.Message})
}

// readJob reads and checks a job, saying what is wrong with a bad one.
func readJob(w http.ResponseWriter, r *http.Request) (job, error) {
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		return job{}, fmt.Errorf("cannot read the body: %v", err)
	}
	if len(bytes.TrimSpace(raw)) == 0 {
		return job{}, errors.New(`empty body: send {"message": "...", "callback_url": "http://..."}`)
	}
	var j job
	if err := json.Unmarshal(raw, &j); err != nil {
		return job{}, fmt.Errorf("invalid JSON: %v", err)
	}
	switch {
	case j.Message == "":
		return job{}, errors.New("message is missing")
	case j.CallbackURL == "":
		return job{}, errors.New("callback_url is missing")
	}
	return j, validCallbackURL(j.CallbackURL)
}

// validCallbackURL reports why raw cannot be a callback URL, or nil.
func validCallbackURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("callback_url is not a URL: %v", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("callback_url %q is not an absolute http or https URL", raw)
	}
	return nil
}

func reply(w http.ResponseWriter, status int, v interface{}) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
