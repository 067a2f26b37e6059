package parkinglot

// Report says what an operation did. Visited = Acted + Kept.
type Report struct {
	Total   int `json:"total"`   // ready messages in the parking queue when the operation began
	Visited int `json:"visited"` // messages it took from the parking queue and looked at
	Matched int `json:"matched"` // visited messages the filter selected
	Acted   int `json:"acted"`   // matched messages replayed, dropped or moved: 0 in a dry run, List and Each
	Kept    int `json:"kept"`    // visited messages put back in the parking queue
}
