package dlxretry

// CheckDeaths is checkDeaths, the check the consumer runs before it trusts
// a death history, for the tests in package dlxretry_test.
var CheckDeaths = checkDeaths

// RejectionSlack is how far beyond MaxAttempts CheckDeaths lets the work
// queue's rejection count go.
const RejectionSlack = rejectionSlack
