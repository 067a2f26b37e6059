package main

import (
	"encoding/json"
	"net/http"
	"sync"
)

// callbackService stands for the service the callbacks go to. It counts the
// messages it receives; while down it answers 503 and counts nothing.
type callbackService struct {
	mu  sync.Mutex
	up  bool
	got map[string]int
}

func newCallbackService() *callbackService {
	return &callbackService{up: true, got: map[string]int{}}
}

func (s *callbackService) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /callback", s.receive)
	mux.HandleFunc("POST /callback/down", func(w http.ResponseWriter, _ *http.Request) { s.set(w, false) })
	mux.HandleFunc("POST /callback/up", func(w http.ResponseWriter, _ *http.Request) { s.set(w, true) })
	mux.HandleFunc("GET /callback/received", func(w http.ResponseWriter, _ *http.Request) { reply(w, http.StatusOK, s.received()) })
	return mux
}

func (s *callbackService) receive(w http.ResponseWriter, r *http.Request) {
	var m struct {
		Message string `json:"message"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody)).Decode(&m); err != nil || m.Message == "" {
		reply(w, http.StatusBadRequest, map[string]string{"error": "want {\"message\": \"...\"}"})
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.up {
		reply(w, http.StatusServiceUnavailable, map[string]string{"error": "callback service is down"})
		return
	}
	s.got[m.Message]++
	reply(w, http.StatusOK, map[string]string{"status": "received"})
}

func (s *callbackService) set(w http.ResponseWriter, up bool) {
	s.mu.Lock()
	s.up = up
	s.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (s *callbackService) isUp() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.up
}

// received is how many times each message arrived while the service was up.
func (s *callbackService) received() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, len(s.got))
	for k, v := range s.got {
		out[k] = v
	}
	return out
}
